//! Sandboxed execution of untrusted (model-written) Python.
//!
//! Owns the [`Sandbox`] seam, its [`SandboxPolicy`] and the one real implementation,
//! [`ProcessSandbox`]. It knows nothing about asserts or verdicts (that is [`super::code`]); it
//! runs one Python script with some stdin (or two at once, each sandboxed on its own, joined only
//! by a pair of pipes) and reports exit, capped output and the lines that carry a caller-chosen
//! marker. There is deliberately no unsandboxed implementation.
//!
//! Isolation is layered (see `child.rs` for the exact syscalls):
//!
//! * [`Isolation::Namespaces`]: new user, mount, network, pid, ipc, uts and cgroup namespaces;
//!   the whole host filesystem remounted read-only; fresh size-capped tmpfs on `/tmp`, `/var/tmp`
//!   and `/dev/shm` (`/tmp` is cwd, `HOME` and `TMPDIR`); a new `/proc`; no network (the new
//!   namespace has only a downed loopback); every capability dropped before `exec`. Python is pid
//!   1 of its namespace, so when it exits or is killed every process it started dies with it.
//! * Always: running as root, the program runs as uid/gid 65534 (nobody), so host files owned
//!   by root are not writable and `RLIMIT_NPROC` is enforced (the kernel exempts uid 0);
//!   cleared environment; a new session and process group that is SIGKILLed on timeout and after
//!   exit; rlimits (address space, processes, file size, CPU, open files, no core dumps);
//!   stdout/stderr read concurrently with a byte cap.
//! * [`Isolation::RlimitsOnly`], the fallback when namespaces are not permitted (or forced by the
//!   policy): rlimits, a private temp dir, cleared environment and process-group kill. Network
//!   is NOT blocked, the filesystem is writable wherever the sandbox uid may write, and a process
//!   that calls `setsid` escapes the group kill. Concurrent programs share the sandbox uid's
//!   process count, and killed processes hold it until the host's init reaps them. The outcome
//!   says what is missing in its `warning`.
//!
//! This contains what model-written code does by accident or by naive intent (loops, bombs,
//! writes, exits, network calls); it is not a defence against kernel exploits.

mod child;
mod supervise;

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// The uid/gid programs run as when maspo itself runs as root (`nobody` on Linux).
pub const SANDBOX_ID: u32 = 65534;

/// Which isolation to use; [`IsolationMode::Auto`] probes once and falls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationMode {
    /// Namespaces when the kernel permits them, else rlimits only (with a warning).
    #[default]
    Auto,
    /// Namespaces or a [`SandboxError::NamespacesUnavailable`] error.
    Namespaces,
    /// Rlimits, private temp dir, cleared environment and group kill only (no network block).
    RlimitsOnly,
}

/// The isolation a program actually ran under; reports show it next to the scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// User/mount/net/pid namespaces, read-only host filesystem, private tmpfs, no network.
    Namespaces,
    /// Rlimits only: network is not blocked and the filesystem is not read-only.
    RlimitsOnly,
}

impl Isolation {
    /// The name used in reports (`namespaces`, `rlimits_only`).
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Namespaces => "namespaces",
            Isolation::RlimitsOnly => "rlimits_only",
        }
    }
}

/// Limits and settings for running one program.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxPolicy {
    /// The interpreter: a path, or a name looked up on `PATH` (default `python3`). A name picks
    /// the first match the sandbox user can run (running as root, a pyenv python under the
    /// 0700 `/root` is skipped in favour of e.g. `/usr/bin/python3`).
    pub python: PathBuf,
    /// Which isolation to use (default: namespaces when permitted).
    pub isolation: IsolationMode,
    /// Wall-clock limit per program in ms (default 10 000: benchmark solutions run in well under
    /// a second; ten leaves room for a slow machine running two sandboxes per core).
    pub timeout_ms: u64,
    /// Limit per assert (and for loading the program) in ms, so one hanging assert does not
    /// cost the others (default 3 000).
    pub assert_timeout_ms: u64,
    /// Address-space limit per process in MiB (default 512: the interpreter needs ~30, a
    /// realistic solution a few hundred at most; a 4 GB allocation fails cleanly).
    pub memory_mb: u64,
    /// Processes per sandbox (`RLIMIT_NPROC`, default 64: enough for a small multiprocessing
    /// pool, small enough that a fork bomb stops at once). Counted per user namespace, so
    /// concurrent sandboxes do not share it; under rlimits only they share the uid's count
    /// (when running as a non-root user, that is every process of the user).
    pub max_procs: u64,
    /// Largest file the program may write, in MiB (default 16).
    pub max_file_mb: u64,
    /// CPU seconds per process (default 10, same as the wall limit; a busy loop in a forked
    /// child that outlives the wall clock still dies).
    pub cpu_secs: u64,
    /// Bytes kept of each of stdout and stderr (default 64 KiB); the rest is read and dropped.
    /// Marked result lines travel past this cap, so it never hides results.
    pub max_output_bytes: usize,
    /// Size of each private tmpfs in MiB under namespaces (default 64).
    pub tmpfs_mb: u64,
    /// Let the program import site-packages (default false: `-S`, the stdlib only, which is
    /// what benchmark tests need, and without the `exit`/`quit` builtins that `site` adds;
    /// user site-packages are never used).
    pub site_packages: bool,
    /// Programs run at once by [`super::code::CodeJudge::run_many`] (default 2).
    pub max_parallel: usize,
    /// Host directories hidden from the program under namespaces (an empty read-only tmpfs
    /// over each): by default `$HOME`, the current directory — the project, its models and run
    /// directories — and the default dataset folder (`$MASPO_DATA_DIR` or maspo's own `data/`).
    /// A directory holding the interpreter or the system (`/usr`, `/lib`, `/bin`, `/etc`) is
    /// never hidden.
    pub hide_paths: Vec<PathBuf>,
}

impl Default for SandboxPolicy {
    fn default() -> Self {
        SandboxPolicy {
            python: PathBuf::from("python3"),
            isolation: IsolationMode::Auto,
            timeout_ms: 10_000,
            assert_timeout_ms: 3_000,
            memory_mb: 512,
            max_procs: 64,
            max_file_mb: 16,
            cpu_secs: 10,
            max_output_bytes: 64 * 1024,
            tmpfs_mb: 64,
            site_packages: false,
            max_parallel: 2,
            hide_paths: std::env::var_os("HOME")
                .map(PathBuf::from)
                .into_iter()
                .chain(std::env::current_dir().ok())
                .chain([crate::tasks::default_data_dir()])
                .collect(),
        }
    }
}

impl SandboxPolicy {
    /// Rejects limits of zero, which would make every program fail.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let fields = [
            ("timeout_ms", self.timeout_ms),
            ("assert_timeout_ms", self.assert_timeout_ms),
            ("memory_mb", self.memory_mb),
            ("max_procs", self.max_procs),
            ("max_file_mb", self.max_file_mb),
            ("cpu_secs", self.cpu_secs),
            ("tmpfs_mb", self.tmpfs_mb),
            ("max_parallel", self.max_parallel as u64),
        ];
        match fields.iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(SandboxError::InvalidPolicy(format!(
                "sandbox policy `{name}` is 0; set it to a positive value"
            ))),
            None => Ok(()),
        }
    }
}

/// Systemic sandbox failures; a program that misbehaves is never one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// No interpreter of that name on `PATH`.
    #[error("python interpreter `{0}` not found on PATH; install python3 or set the sandbox policy's `python` to an interpreter's path")]
    PythonNotFound(PathBuf),
    /// Interpreters exist but none runs inside the sandbox.
    #[error("no python interpreter runs inside the sandbox (tried {tried}): {reason}; install python3 where uid {SANDBOX_ID} can run it (e.g. /usr/bin/python3) or set the sandbox policy's `python`")]
    PythonUnusable {
        /// The interpreters tried, comma-separated.
        tried: String,
        /// Why the last one failed.
        reason: String,
    },
    /// The policy demands namespaces and the kernel refuses them.
    #[error("linux namespaces are not available for the sandbox ({0}); allow unprivileged user namespaces or set the sandbox policy's `isolation` to \"auto\" or \"rlimits_only\"")]
    NamespacesUnavailable(String),
    /// The policy is unusable.
    #[error("{0}")]
    InvalidPolicy(String),
    /// Starting the interpreter failed.
    #[error("cannot start {python} in the sandbox: {source}")]
    Spawn {
        /// The interpreter.
        python: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The OS random source failed.
    #[error("cannot read random bytes from /dev/urandom: {0}")]
    Random(std::io::Error),
    /// The pipes between the two programs of a pair could not be made.
    #[error("cannot create the channel between the code checker and the program: {0}")]
    Channel(std::io::Error),
    /// The private temp dir could not be made.
    #[error("cannot create the sandbox directory {path}: {source}")]
    TempDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One program to run.
#[derive(Debug, Clone, Default)]
pub struct PythonJob {
    /// Python source run with `python -c` (the trusted harness; argv is not secret).
    pub script: String,
    /// Bytes written to the program's stdin, then closed.
    pub stdin: Vec<u8>,
    /// Lines of stdout that begin with these bytes are collected into
    /// [`RunOutcome::marked_lines`] regardless of the output cap; empty disables this.
    pub marker: Vec<u8>,
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// Exited with this code (under namespaces, 128 + n means killed by signal n).
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// What happened to one program.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Exit code or signal.
    pub exit: ExitKind,
    /// Stdout with marked lines removed, at most `max_output_bytes`.
    pub stdout: String,
    /// Stderr, at most `max_output_bytes`.
    pub stderr: String,
    /// Stdout exceeded the cap.
    pub stdout_truncated: bool,
    /// Stderr exceeded the cap.
    pub stderr_truncated: bool,
    /// The stdout lines that began with the job's marker, marker stripped, in order.
    pub marked_lines: Vec<String>,
    /// The wall-clock limit was hit and the process group killed.
    pub timed_out: bool,
    /// Wall-clock time from spawn to exit.
    pub wall_ms: u64,
    /// The isolation it ran under.
    pub isolation: Isolation,
    /// What the isolation does not cover, when weaker than namespaces, or other caveats.
    pub warning: Option<String>,
}

/// Runs untrusted Python under some isolation.
pub trait Sandbox: Send + Sync {
    /// The limits it applies.
    fn policy(&self) -> &SandboxPolicy;
    /// The isolation every run gets.
    fn isolation(&self) -> Isolation;
    /// Runs one program to completion or timeout; errors are systemic only.
    fn run(&self, job: &PythonJob) -> Result<RunOutcome, SandboxError>;
    /// Runs two programs at once, each in a sandbox of its own, joined by a channel of two
    /// pipes (one each way) and nothing else: each finds its read and write descriptors in
    /// [`CHANNEL_ENV`] (`"<read fd> <write fd>"`). The second is stopped once the first has
    /// ended. The code judge runs its trusted checker as the first and the candidate as the
    /// second. Errors are systemic only.
    fn run_pair(
        &self,
        first: &PythonJob,
        second: &PythonJob,
    ) -> Result<(RunOutcome, RunOutcome), SandboxError>;
}

/// The environment variable that gives each program of [`Sandbox::run_pair`] its channel.
pub const CHANNEL_ENV: &str = "MASPO_CHANNEL";

/// The process sandbox: namespaces when permitted, rlimits otherwise (see the module docs).
#[derive(Debug, Clone)]
pub struct ProcessSandbox {
    policy: SandboxPolicy,
    python: PathBuf,
    isolation: Isolation,
    warning: Option<String>,
}

impl ProcessSandbox {
    /// Resolves the interpreter and probes the isolation (once per process and policy).
    pub fn new(policy: SandboxPolicy) -> Result<Self, SandboxError> {
        policy.validate()?;
        static CACHE: OnceLock<Mutex<HashMap<SandboxPolicy, ProcessSandbox>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let cached = lock(cache).get(&policy).cloned();
        if let Some(sandbox) = cached {
            return Ok(sandbox);
        }
        let sandbox = Self::probe(policy)?;
        lock(cache).insert(sandbox.policy.clone(), sandbox.clone());
        Ok(sandbox)
    }

    /// The interpreter programs run with.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Why the isolation is weaker than namespaces, if it is.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    fn probe(policy: SandboxPolicy) -> Result<Self, SandboxError> {
        let mut sandbox = ProcessSandbox {
            python: PathBuf::new(),
            isolation: Isolation::RlimitsOnly,
            warning: None,
            policy,
        };
        sandbox.python = sandbox.usable_python()?;
        let fallback = "network access is NOT blocked, the host filesystem is writable \
                        wherever the sandbox user may write, and processes that leave the \
                        process group escape the kill";
        match sandbox.policy.isolation {
            IsolationMode::RlimitsOnly => {
                sandbox.warning = Some(format!(
                    "isolation forced to rlimits_only by the sandbox policy: {fallback}"
                ));
            }
            mode => {
                sandbox.isolation = Isolation::Namespaces;
                if let Err(reason) = sandbox.smoke_test() {
                    if mode == IsolationMode::Namespaces {
                        return Err(SandboxError::NamespacesUnavailable(reason));
                    }
                    let warning = format!(
                        "linux namespaces unavailable ({reason}); running with rlimits only: {fallback}"
                    );
                    tracing::warn!("code sandbox: {warning}");
                    sandbox.isolation = Isolation::RlimitsOnly;
                    sandbox.warning = Some(warning);
                }
            }
        }
        Ok(sandbox)
    }

    /// The first interpreter candidate that runs under rlimits-only isolation.
    fn usable_python(&mut self) -> Result<PathBuf, SandboxError> {
        let candidates = python_candidates(&self.policy.python)?;
        let mut reason = String::new();
        for candidate in &candidates {
            self.python = candidate.clone();
            match self.smoke_test() {
                Ok(()) => return Ok(candidate.clone()),
                Err(why) => reason = format!("{}: {why}", candidate.display()),
            }
        }
        let tried = candidates.iter().map(|c| c.display().to_string());
        Err(SandboxError::PythonUnusable {
            tried: tried.collect::<Vec<_>>().join(", "),
            reason,
        })
    }

    /// Runs a trivial program under the current settings.
    fn smoke_test(&self) -> Result<(), String> {
        let job = PythonJob {
            script: "import sys; sys.stdout.write('maspo-sandbox-ok')".into(),
            ..PythonJob::default()
        };
        match self.run(&job) {
            Ok(out) if out.exit == ExitKind::Code(0) && out.stdout == "maspo-sandbox-ok" => Ok(()),
            Ok(out) => Err(format!(
                "exit {:?}, stderr: {}",
                out.exit,
                out.stderr.trim().chars().take(300).collect::<String>()
            )),
            Err(SandboxError::Spawn { source, .. }) => Err(source.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn command(
        &self,
        job: &PythonJob,
        dir: Option<&PrivateDir>,
        channel: Option<[libc::c_int; 2]>,
    ) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg("-s");
        if !self.policy.site_packages {
            cmd.arg("-S");
        }
        cmd.arg("-c").arg(&job.script);
        let home = dir.map_or(Path::new("/tmp"), |d| d.path.as_path());
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", home)
            .env("TMPDIR", home)
            .env("LANG", "C.UTF-8")
            .env("PYTHONIOENCODING", "utf-8")
            // Not `-I`: it implies `-E`, which would drop PYTHONHASHSEED. The environment is
            // ours anyway; PYTHONSAFEPATH (3.11+) is `-I`'s remaining part, no cwd on sys.path.
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONSAFEPATH", "1")
            .current_dir(dir.map_or(Path::new("/"), |d| d.path.as_path()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some([read, write]) = channel {
            cmd.env(CHANNEL_ENV, format!("{read} {write}"));
        }
        let ids = sandbox_ids();
        if ids.drop_root {
            cmd.uid(ids.uid).gid(ids.gid);
        }
        let plan = child::ChildPlan::new(
            &self.policy,
            self.isolation == Isolation::Namespaces,
            ids,
            &self.python,
            channel,
        );
        // SAFETY: `ChildPlan::apply` only makes async-signal-safe calls on data prepared above.
        unsafe { cmd.pre_exec(move || plan.apply()) };
        cmd
    }
}

impl Sandbox for ProcessSandbox {
    fn policy(&self) -> &SandboxPolicy {
        &self.policy
    }

    fn isolation(&self) -> Isolation {
        self.isolation
    }

    fn run(&self, job: &PythonJob) -> Result<RunOutcome, SandboxError> {
        let dir = self.private_dir()?;
        let child = self.spawn(job, dir.as_ref(), None)?;
        let never = AtomicBool::new(false);
        let done = supervise::supervise(child, &job.stdin, &job.marker, &self.policy, &never);
        drop(dir);
        Ok(self.outcome(done))
    }

    fn run_pair(
        &self,
        first: &PythonJob,
        second: &PythonJob,
    ) -> Result<(RunOutcome, RunOutcome), SandboxError> {
        // `to_second` carries what the first writes; `to_first` what the second writes.
        let (to_second_read, to_second_write) = pipe()?;
        let (to_first_read, to_first_write) = pipe()?;
        let (dir1, dir2) = (self.private_dir()?, self.private_dir()?);
        let child1 = self.spawn(
            first,
            dir1.as_ref(),
            Some([to_first_read.as_raw_fd(), to_second_write.as_raw_fd()]),
        )?;
        let stop = AtomicBool::new(false);
        let child2 = match self.spawn(
            second,
            dir2.as_ref(),
            Some([to_second_read.as_raw_fd(), to_first_write.as_raw_fd()]),
        ) {
            Ok(child) => child,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                supervise::supervise(child1, &[], &[], &self.policy, &stop);
                return Err(e);
            }
        };
        // Only the programs hold the ends now: one that exits is an end of file to the other.
        drop((
            to_second_read,
            to_second_write,
            to_first_read,
            to_first_write,
        ));
        let never = AtomicBool::new(false);
        let (done1, done2) = std::thread::scope(|scope| {
            let second_done = scope.spawn(|| {
                supervise::supervise(child2, &second.stdin, &second.marker, &self.policy, &stop)
            });
            let done1 =
                supervise::supervise(child1, &first.stdin, &first.marker, &self.policy, &never);
            stop.store(true, Ordering::Relaxed);
            (done1, second_done.join())
        });
        drop((dir1, dir2));
        let done2 = done2.map_err(|_| {
            SandboxError::Channel(std::io::Error::other("the supervising thread panicked"))
        })?;
        Ok((self.outcome(done1), self.outcome(done2)))
    }
}

impl ProcessSandbox {
    /// A private temp dir (rlimits only; namespaces get a private tmpfs instead).
    fn private_dir(&self) -> Result<Option<PrivateDir>, SandboxError> {
        match self.isolation {
            Isolation::RlimitsOnly => Ok(Some(PrivateDir::create(sandbox_ids())?)),
            Isolation::Namespaces => Ok(None),
        }
    }

    fn spawn(
        &self,
        job: &PythonJob,
        dir: Option<&PrivateDir>,
        channel: Option<[libc::c_int; 2]>,
    ) -> Result<std::process::Child, SandboxError> {
        self.command(job, dir, channel)
            .spawn()
            .map_err(|source| SandboxError::Spawn {
                python: self.python.clone(),
                source,
            })
    }

    fn outcome(&self, done: supervise::Finished) -> RunOutcome {
        let mut warning = self.warning.clone();
        if done.pipes_left_open {
            let note = "processes that left the process group kept the output open and may \
                        still be running";
            warning = Some(warning.map_or(note.to_string(), |w| format!("{w}; {note}")));
        }
        RunOutcome {
            exit: done.exit,
            stdout: String::from_utf8_lossy(&done.stdout.plain.data).into_owned(),
            stderr: String::from_utf8_lossy(&done.stderr.data).into_owned(),
            stdout_truncated: done.stdout.plain.truncated,
            stderr_truncated: done.stderr.truncated,
            marked_lines: done.stdout.lines,
            timed_out: done.timed_out,
            wall_ms: done.wall.as_millis() as u64,
            isolation: self.isolation,
            warning,
        }
    }
}

/// A pipe, both ends close-on-exec (a spawned program keeps only the ends it is given).
fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which we then own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(SandboxError::Channel(std::io::Error::last_os_error()));
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Who the program runs as, outside any namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SandboxIds {
    drop_root: bool,
    uid: u32,
    gid: u32,
}

fn sandbox_ids() -> SandboxIds {
    // SAFETY: plain getters without preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        SandboxIds {
            drop_root: true,
            uid: SANDBOX_ID,
            gid: SANDBOX_ID,
        }
    } else {
        SandboxIds {
            drop_root: false,
            uid,
            gid,
        }
    }
}

/// The interpreters `python` may mean: itself when it is a path, else every match on `PATH`,
/// each resolved through `sys.executable` so that shims (pyenv) are seen through.
fn python_candidates(python: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let found: Vec<PathBuf> = if python.components().count() > 1 {
        vec![python.to_path_buf()]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(python))
            .filter(|p| is_executable(p))
            .collect()
    };
    if found.is_empty() {
        return Err(SandboxError::PythonNotFound(python.to_path_buf()));
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for candidate in found {
        let real = real_interpreter(&candidate).unwrap_or(candidate);
        if !out.contains(&real) {
            out.push(real);
        }
    }
    Ok(out)
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `sys.executable` of an interpreter run on the host with the caller's environment.
fn real_interpreter(python: &Path) -> Option<PathBuf> {
    let out = Command::new(python)
        .args([
            "-s",
            "-S",
            "-c",
            "import sys; sys.stdout.write(sys.executable)",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && text.starts_with('/')).then(|| PathBuf::from(text))
}

/// `n` random bytes from the OS as lowercase hex.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A fresh directory under the system temp dir, owned by the sandbox user, removed on drop.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn create(ids: SandboxIds) -> Result<Self, SandboxError> {
        let base = std::env::temp_dir();
        let err = |path: PathBuf| move |source| SandboxError::TempDir { path, source };
        let name = format!(
            "maspo-sandbox-{}",
            random_hex(12).map_err(err(base.clone()))?
        );
        let path = base.join(name);
        std::fs::create_dir(&path).map_err(err(path.clone()))?;
        let dir = PrivateDir { path };
        let perms = std::fs::Permissions::from_mode(0o700);
        std::fs::set_permissions(&dir.path, perms).map_err(err(dir.path.clone()))?;
        if ids.drop_root {
            chown(&dir.path, Some(ids.uid), Some(ids.gid)).map_err(err(dir.path.clone()))?;
        }
        Ok(dir)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(
                "cannot remove sandbox directory {}: {e}",
                self.path.display()
            );
        }
    }
}
