//! The child side of the process sandbox: what runs between `fork` and `exec`.
//!
//! This code runs in the forked child of a multi-threaded process, so it must only make
//! async-signal-safe calls: no allocation, no locks, no formatting. Everything it needs is built
//! by [`ChildPlan::new`] in the parent. It must not do anything that depends on the program.
//!
//! Order matters: std has already switched to the sandbox uid (when running as root) and
//! changed directory. Then: new session; user namespace (after the uid switch, so the
//! namespace's processes count against `RLIMIT_NPROC`); mounts; a fork so that Python becomes
//! pid 1 of the new pid namespace while the forked-off parent waits and relays its status;
//! rlimits (after `unshare`, so the process cap is per namespace); finally all capabilities
//! are dropped and `no_new_privs` set.

use super::{SandboxIds, SandboxPolicy};
use std::ffi::{CStr, CString};
use std::io;

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Open files per process: the interpreter needs about ten.
const MAX_OPEN_FILES: u64 = 64;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Everything the child does, prepared in the parent.
pub(super) struct ChildPlan {
    namespaces: bool,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    tmpfs_options: CString,
    limits: [(Resource, u64); 6],
    /// Directories to cover with an empty read-only tmpfs.
    hide: Vec<CString>,
    /// Descriptors the program keeps across `exec` (its channel ends; -1: none).
    keep: [libc::c_int; 2],
}

/// The policy's hidden directories that are safe to hide: absolute, existing, and neither the
/// system's nor the interpreter's ancestors.
fn hideable(policy: &SandboxPolicy, python: &std::path::Path) -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    let python = python
        .canonicalize()
        .unwrap_or_else(|_| python.to_path_buf());
    let keep = [
        std::path::Path::new("/usr"),
        std::path::Path::new("/lib"),
        std::path::Path::new("/lib64"),
        std::path::Path::new("/bin"),
        std::path::Path::new("/etc"),
        std::path::Path::new("/tmp"),
        python.as_path(),
    ];
    let dirs: Vec<std::path::PathBuf> = policy
        .hide_paths
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .filter(|p| p.is_dir() && !keep.iter().any(|k| k.starts_with(p)))
        .collect();
    // A directory inside another hidden one is covered already (and could not be mounted on).
    dirs.iter()
        .filter(|p| !dirs.iter().any(|q| q != *p && p.starts_with(q)))
        .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
        .collect()
}

impl ChildPlan {
    pub(super) fn new(
        policy: &SandboxPolicy,
        namespaces: bool,
        ids: SandboxIds,
        python: &std::path::Path,
        keep: Option<[libc::c_int; 2]>,
    ) -> Self {
        const MIB: u64 = 1024 * 1024;
        let options = format!("size={}m,nr_inodes=16384,mode=1777", policy.tmpfs_mb);
        ChildPlan {
            namespaces,
            // Root inside maps to the sandbox uid outside: only that one id exists in there.
            uid_map: format!("0 {} 1\n", ids.uid).into_bytes(),
            gid_map: format!("0 {} 1\n", ids.gid).into_bytes(),
            // A format of numbers and ASCII: no interior NUL.
            tmpfs_options: CString::new(options).unwrap_or_default(),
            limits: [
                (libc::RLIMIT_AS, policy.memory_mb.saturating_mul(MIB)),
                (libc::RLIMIT_NPROC, policy.max_procs),
                (libc::RLIMIT_FSIZE, policy.max_file_mb.saturating_mul(MIB)),
                (libc::RLIMIT_CPU, policy.cpu_secs),
                (libc::RLIMIT_NOFILE, MAX_OPEN_FILES),
                (libc::RLIMIT_CORE, 0),
            ],
            hide: if namespaces {
                hideable(policy, python)
            } else {
                Vec::new()
            },
            keep: keep.unwrap_or([-1, -1]),
        }
    }

    /// Runs in the forked child, right before `exec`.
    pub(super) fn apply(&self) -> io::Result<()> {
        // SAFETY: async-signal-safe syscalls on memory owned by `self` or static C strings.
        unsafe {
            // The channel ends were made close-on-exec in the parent (so no other program
            // inherits them); this one keeps its own.
            for fd in self.keep {
                if fd >= 0 {
                    check(libc::fcntl(fd, libc::F_SETFD, 0))?;
                }
            }
            check(libc::setsid())?;
            // Changing uid made the process non-dumpable, which makes /proc/self root-owned;
            // the uid map below must be writable by us. `exec` resets this anyway.
            check(prctl(libc::PR_SET_DUMPABLE, 1))?;
            if self.namespaces {
                self.enter_namespaces()?;
                become_pid_one()?;
            }
            // Only in the process that execs: the waiting parent is a copy of the (possibly
            // huge) host process and must not be held to the program's limits.
            self.set_limits()?;
            drop_privileges()
        }
    }

    unsafe fn enter_namespaces(&self) -> io::Result<()> {
        let flags = libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP;
        check(libc::unshare(flags))?;
        write_file(c"/proc/self/setgroups", b"deny")?;
        write_file(c"/proc/self/uid_map", &self.uid_map)?;
        write_file(c"/proc/self/gid_map", &self.gid_map)?;
        let none = std::ptr::null();
        let private = libc::MS_REC | libc::MS_PRIVATE;
        check(libc::mount(
            none,
            c"/".as_ptr(),
            none,
            private,
            std::ptr::null(),
        ))?;
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let ro = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        check(ro as libc::c_int)?;
        // The project, models, run directories, home: covered by an empty read-only tmpfs
        // (before /tmp, so a hidden directory under /tmp is simply replaced with it).
        for dir in &self.hide {
            let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            check(libc::mount(
                c"tmpfs".as_ptr(),
                dir.as_ptr(),
                c"tmpfs".as_ptr(),
                flags,
                c"size=4k,nr_inodes=2,mode=0555".as_ptr().cast(),
            ))?;
        }
        // Mounted after the read-only pass, so these stay writable. Only /tmp is required.
        self.mount_tmpfs(c"/tmp")?;
        let _ = self.mount_tmpfs(c"/var/tmp");
        let _ = self.mount_tmpfs(c"/dev/shm");
        check(libc::chdir(c"/tmp".as_ptr()))
    }

    unsafe fn mount_tmpfs(&self, target: &CStr) -> io::Result<()> {
        let flags = libc::MS_NOSUID | libc::MS_NODEV;
        let data = self.tmpfs_options.as_ptr().cast();
        check(libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            data,
        ))
    }

    unsafe fn set_limits(&self) -> io::Result<()> {
        for &(resource, value) in &self.limits {
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            check(libc::setrlimit(resource, &limit))?;
        }
        Ok(())
    }
}

/// Forks; the parent (still in the host pid namespace, the process std spawned) waits for the
/// child and exits with its status; the child is pid 1 of the new namespace and returns.
unsafe fn become_pid_one() -> io::Result<()> {
    let pid = libc::fork();
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        relay_exit(pid);
    }
    // If the waiting parent is killed (timeout), take the whole namespace down with it.
    check(prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
    ))?;
    // A /proc of the new namespace hides host processes; best effort (refused where the host's
    // /proc is partly masked, e.g. in some containers).
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
    let proc_ = c"proc".as_ptr();
    let _ = libc::mount(proc_, c"/proc".as_ptr(), proc_, flags, std::ptr::null());
    Ok(())
}

/// The waiting parent: closes every inherited descriptor but stdio (std's exec-status pipe
/// among them, so `spawn` returns once the child has exec'd), waits, exits like the child.
unsafe fn relay_exit(pid: libc::pid_t) -> ! {
    if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
        for fd in 3..65536 {
            libc::close(fd);
        }
    }
    let mut status = 0;
    loop {
        let r = libc::waitpid(pid, &mut status, 0);
        if r == pid {
            break;
        }
        if r < 0 && *libc::__errno_location() != libc::EINTR {
            libc::_exit(126);
        }
    }
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    if libc::WIFSIGNALED(status) {
        libc::_exit(128 + libc::WTERMSIG(status));
    }
    libc::_exit(126)
}

/// Empties the capability bounding and ambient sets, so the exec'd program has no
/// capabilities even as root of its user namespace (it cannot remount anything writable), and
/// forbids gaining privileges through exec.
unsafe fn drop_privileges() -> io::Result<()> {
    for cap in 0..64 {
        // EINVAL past the last capability; EPERM without CAP_SETPCAP (then there is none).
        prctl(libc::PR_CAPBSET_DROP, cap);
    }
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    );
    check(prctl(libc::PR_SET_NO_NEW_PRIVS, 1))
}

unsafe fn write_file(path: &CStr, data: &[u8]) -> io::Result<()> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    check(fd)?;
    let n = libc::write(fd, data.as_ptr().cast(), data.len());
    let result = if n == data.len() as isize {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    libc::close(fd);
    result
}

/// `prctl` with one argument, the unused ones zero (the kernel reads them as `unsigned long`).
unsafe fn prctl(option: libc::c_int, arg: libc::c_ulong) -> libc::c_int {
    let zero: libc::c_ulong = 0;
    libc::prctl(option, arg, zero, zero, zero)
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
