//! The code judge's sandbox against hostile programs, with a real python3.
//!
//! Every hostile program must be contained and judged a failure: the assertions check the
//! report (and the host afterwards), not merely that nothing crashed. Tests that need namespaces
//! skip with a note where the kernel refuses them; the rlimits-only fallback is forced through
//! the policy and tested for what it does and, honestly, does not cover.

use maspo::judge::code::{CodeJudge, TestReport};
use maspo::judge::sandbox::{
    random_hex, Isolation, IsolationMode, PythonJob, SandboxError, SandboxPolicy,
};
use maspo::judge::{Judge, JudgeItem};
use maspo::tasks::{CodeTests, Example, Gold};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Fork bombs and rlimits-only runs share the sandbox uid's process count; keep them apart.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn policy(isolation: IsolationMode) -> SandboxPolicy {
    SandboxPolicy {
        isolation,
        timeout_ms: 2_500,
        assert_timeout_ms: 1_000,
        ..SandboxPolicy::default()
    }
}

/// The namespace judge, or `None` (test skipped) where the kernel refuses namespaces.
fn ns_judge() -> Option<CodeJudge> {
    match CodeJudge::from_policy(policy(IsolationMode::Namespaces)) {
        Ok(judge) => Some(judge),
        Err(SandboxError::NamespacesUnavailable(why)) => {
            eprintln!("skipping: namespaces unavailable here: {why}");
            None
        }
        Err(e) => panic!("sandbox setup: {e}"),
    }
}

fn rlimits_judge() -> CodeJudge {
    CodeJudge::from_policy(policy(IsolationMode::RlimitsOnly)).expect("rlimits-only sandbox")
}

fn tests(asserts: &[&str], imports: &[&str]) -> CodeTests {
    CodeTests {
        asserts: asserts.iter().map(|s| s.to_string()).collect(),
        imports: imports.iter().map(|s| s.to_string()).collect(),
        entry_point: None,
    }
}

fn run(judge: &CodeJudge, code: &str, asserts: &[&str]) -> TestReport {
    judge
        .run_tests(code, &tests(asserts, &[]))
        .expect("systemic sandbox failure")
}

/// Pids whose command line contains `marker`.
fn pids_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// [`pids_with`] after giving killed processes time to be reaped.
fn survivors(marker: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let found = pids_with(marker);
        if found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_correct_solution_passes_every_assert() {
    let Some(judge) = ns_judge() else { return };
    let r = run(
        &judge,
        "def add(a, b):\n    return a + b",
        &["assert add(1, 2) == 3", "assert add(-1, 1) == 0"],
    );
    assert_eq!((r.passed, r.total), (2, 2), "{r:#?}");
    assert!(r.pass_at_1() && r.finished && r.fraction() == 1.0);
    assert_eq!(r.isolation, Isolation::Namespaces);
    let v = r.to_verdict("code");
    assert!(v.correct && v.score == 1.0, "{v:?}");
}

#[test]
fn a_partial_solution_gets_partial_credit() {
    let Some(judge) = ns_judge() else { return };
    let code = "def sq(x):\n    return x * 2";
    let r = run(
        &judge,
        code,
        &[
            "assert sq(2) == 4",
            "assert sq(0) == 0",
            "assert sq(3) == 9",
        ],
    );
    assert_eq!((r.passed, r.total), (2, 3), "{r:#?}");
    assert!(!r.pass_at_1() && (r.fraction() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(r.per_assert[2].error.as_deref(), Some("AssertionError"));
    assert!(r
        .to_verdict(code)
        .detail
        .contains("assert 2 failed: AssertionError"));
}

#[test]
fn a_syntax_error_is_a_load_error() {
    let Some(judge) = ns_judge() else { return };
    let r = run(&judge, "def f(:\n    return 1", &["assert f() == 1"]);
    assert_eq!(r.passed, 0);
    assert!(
        r.load_error
            .as_deref()
            .is_some_and(|e| e.starts_with("SyntaxError")),
        "{r:#?}"
    );
    assert!(!r.to_verdict("x").correct);
}

#[test]
fn math_and_prompt_imports_are_prepended() {
    let Some(judge) = ns_judge() else { return };
    let code = "def norm(v: List[float]) -> float:\n    return sum(x * x for x in v) ** 0.5";
    let t = tests(
        &["assert norm([3.0, 4.0]) == math.sqrt(25)"],
        &["from typing import List"],
    );
    let r = judge.run_tests(code, &t).expect("run");
    assert_eq!((r.passed, r.total), (1, 1), "{r:#?}");
}

#[test]
fn no_asserts_cannot_be_judged() {
    let Some(judge) = ns_judge() else { return };
    let r = run(&judge, "x = 1", &[]);
    let v = r.to_verdict("x = 1");
    assert!(!v.correct && v.score == 0.0 && v.detail.contains("no tests"));
}

#[test]
fn exiting_early_scores_nothing() {
    let Some(judge) = ns_judge() else { return };
    let exits = [
        "exit(0)",
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        "raise KeyboardInterrupt",
        "import sys\ndef f(x):\n    sys.exit(0)",
        "import os\ndef f(x):\n    os._exit(0)",
    ];
    for code in exits {
        let r = run(&judge, code, &["assert f(1) == 2", "assert f(2) == 3"]);
        assert_eq!(r.passed, 0, "{code}: {r:#?}");
        assert!(!r.to_verdict(code).correct);
    }
}

#[test]
fn printed_fake_results_score_nothing() {
    let Some(judge) = ns_judge() else { return };
    let fakes = [
        "PASS",
        "0 PASS",
        "1 PASS",
        "DONE 2",
        "ok",
        "0 0 PASS",
        "00000000000000000000000000000000 0 PASS",
        "00000000000000000000000000000000 1 PASS",
        "00000000000000000000000000000000 DONE 2",
    ];
    let prints: String = fakes.iter().map(|f| format!("print({f:?})\n")).collect();
    let code = format!("import os, sys\n{prints}sys.stdout.flush()\nos._exit(0)");
    let r = run(&judge, &code, &["assert True", "assert True"]);
    assert_eq!((r.passed, r.finished), (0, true), "{r:#?}");
    assert!(r.load_error.is_some(), "{r:#?}");
    // Printing fake lines and then failing the asserts genuinely also scores nothing.
    let code = format!("{prints}def f():\n    print('0 PASS')\n    return 0");
    let r = run(&judge, &code, &["assert f() == 1", "assert f() == 2"]);
    assert_eq!((r.passed, r.finished), (0, true), "{r:#?}");
}

const CONNECT: &str = "import socket\n\
def connected(port):\n    \
    try:\n        \
        socket.create_connection(('127.0.0.1', port), timeout=0.5).close()\n        \
        return True\n    \
    except OSError:\n        \
        return False\n";

#[test]
fn the_network_is_unreachable() {
    let Some(judge) = ns_judge() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let r = run(&judge, CONNECT, &[&format!("assert connected({port})")]);
    assert_eq!(r.passed, 0, "connected to the host's loopback: {r:#?}");
    let external = "import socket\ndef dns():\n    socket.create_connection(('1.1.1.1', 53), 1).close()\n    return True";
    let r = run(&judge, external, &["assert dns()"]);
    assert_eq!(r.passed, 0, "{r:#?}");
}

#[test]
fn a_fork_bomb_is_contained() {
    let Some(judge) = ns_judge() else { return };
    let _serial = serial();
    let code = "import os\ndef bomb():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass";
    let start = Instant::now();
    let r = run(&judge, code, &["assert bomb()", "assert 1 + 1 == 2"]);
    assert_eq!((r.passed, r.total), (1, 2), "{r:#?}");
    assert!(
        r.per_assert[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("Timeout")),
        "{r:#?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    // The cap is the policy's, per sandbox: forks stop just short of `max_procs`.
    let code = "import os, time\ndef spawned():\n    n = 0\n    while True:\n        try:\n            pid = os.fork()\n        except OSError:\n            return n\n        if pid == 0:\n            time.sleep(30)\n            os._exit(0)\n        n += 1";
    let max = judge.sandbox().policy().max_procs;
    let r = run(
        &judge,
        code,
        &[&format!("assert {} < spawned() < {max}", max / 2)],
    );
    assert_eq!(r.passed, 1, "{r:#?}");
}

#[test]
fn a_memory_bomb_fails_cleanly() {
    let Some(judge) = ns_judge() else { return };
    let code = "def hog():\n    return len(bytearray(4 * 1024 ** 3))";
    let r = run(
        &judge,
        code,
        &["assert hog() > 0", "assert hog is not None"],
    );
    assert_eq!((r.passed, r.total), (1, 2), "{r:#?}");
    assert_eq!(r.per_assert[0].error.as_deref(), Some("MemoryError"));
}

#[test]
fn the_host_filesystem_is_read_only_and_tmp_is_private() {
    let Some(judge) = ns_judge() else { return };
    let host = tempfile::Builder::new()
        .prefix("sandbox-write-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("host dir");
    // World-writable, so only the read-only mount (not file permissions) can stop the write.
    std::fs::set_permissions(
        host.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let target = host.path().join("escaped.txt");
    let host_tmp = tempfile::NamedTempFile::new().expect("host tmp file");
    // The asserts run in the checker: the program's view comes back through its functions.
    let code = "import os\ndef wrote(p):\n    with open(p, 'w') as f:\n        f.write('x')\n    return os.path.exists(p)\n\
def caps():\n    return [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n\
def cwd():\n    return os.getcwd()\ndef exists(p):\n    return os.path.exists(p)";
    let asserts = [
        format!("assert wrote({:?})", target.display().to_string()),
        "assert wrote('/usr/maspo-escaped')".to_string(),
        "assert wrote('scratch.txt') and wrote('/tmp/x') and cwd() == '/tmp'".to_string(),
        format!(
            "assert not exists({:?})",
            host_tmp.path().display().to_string()
        ),
        "assert int(caps(), 16) == 0".to_string(),
    ];
    let asserts: Vec<&str> = asserts.iter().map(String::as_str).collect();
    let r = run(&judge, code, &asserts);
    let passed: Vec<bool> = r.per_assert.iter().map(|a| a.passed).collect();
    assert_eq!(passed, [false, false, true, true, true], "{r:#?}");
    assert!(!target.exists() && !Path::new("/usr/maspo-escaped").exists());
}

#[test]
fn an_infinite_loop_is_killed_with_its_children() {
    let Some(judge) = ns_judge() else { return };
    assert_loop_and_children_killed(&judge);
}

#[test]
fn huge_output_is_capped_without_losing_results() {
    let Some(judge) = ns_judge() else { return };
    let code = "import sys\ndef spam():\n    chunk = 'y' * 65536\n    while True:\n        sys.stdout.write(chunk)";
    let r = run(&judge, code, &["assert spam()", "assert 2 + 2 == 4"]);
    assert_eq!((r.passed, r.total, r.finished), (1, 2, true), "{r:#?}");
    assert!(r.stdout_truncated && !r.timed_out, "{r:#?}");
    // A gigabyte without newlines straight from the sandbox: bounded, then cut.
    let job = PythonJob {
        script: "import sys\nc = 'z' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(c)"
            .into(),
        ..PythonJob::default()
    };
    let out = judge.sandbox().run(&job).expect("run");
    assert!(out.stdout_truncated && out.stdout.len() <= judge.sandbox().policy().max_output_bytes);
}

#[test]
fn the_environment_is_cleared() {
    let Some(judge) = ns_judge() else { return };
    assert!(
        std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
        "cargo sets it for tests"
    );
    let allowed = "{'PATH', 'HOME', 'TMPDIR', 'LANG', 'PYTHONIOENCODING', 'PYTHONHASHSEED', \
                   'PYTHONDONTWRITEBYTECODE', 'PYTHONSAFEPATH', 'LC_CTYPE'}";
    let asserts = [
        "assert env().get('CARGO_MANIFEST_DIR') is not None".to_string(),
        format!("assert set(env()) <= {allowed}"),
    ];
    let code = "import os\ndef env():\n    return dict(os.environ)";
    let r = run(&judge, code, &[&asserts[0], &asserts[1]]);
    let passed: Vec<bool> = r.per_assert.iter().map(|a| a.passed).collect();
    assert_eq!(passed, [false, true], "{r:#?}");
}

#[test]
fn many_programs_are_judged_in_parallel_and_in_order() {
    let Some(judge) = ns_judge() else { return };
    let t = tests(&["assert f() == 1"], &[]);
    let codes = [
        "def f(): return 1",
        "def f(): return 2",
        "def f(:",
        "def f(): return 1",
    ];
    let jobs: Vec<(&str, &CodeTests)> = codes.iter().map(|c| (*c, &t)).collect();
    let passed: Vec<usize> = judge
        .run_many(&jobs)
        .into_iter()
        .map(|r| r.expect("run").passed)
        .collect();
    assert_eq!(passed, [1, 0, 0, 1]);
}

#[test]
fn the_judge_trait_judges_code_examples() {
    let Some(judge) = ns_judge() else { return };
    let example = |gold| Example {
        id: "e".into(),
        question: "q".into(),
        gold,
    };
    let code = example(Gold::Code(tests(&["assert f() == 1"], &[])));
    let answer = example(Gold::Answer("1".into()));
    let item = |example, answer| JudgeItem {
        example,
        output: answer,
        answer,
    };
    let items = [
        item(&code, "def f(): return 1"),
        item(&code, "def f(): return 2"),
        item(&code, ""),
        item(&answer, "1"),
    ];
    let verdicts = Judge::judge(&judge, &items);
    let correct: Vec<bool> = verdicts.iter().map(|v| v.correct).collect();
    assert_eq!(correct, [true, false, false, false], "{verdicts:#?}");
    assert_eq!(judge.name(), "code");
    assert!(verdicts[2].detail.contains("no code"));
}

#[test]
fn rlimits_only_still_judges_and_says_what_it_lacks() {
    let _serial = serial();
    let judge = rlimits_judge();
    let r = run(
        &judge,
        "def sq(x):\n    return x * x",
        &[
            "assert sq(2) == 4",
            "assert sq(3) == 9",
            "assert sq(4) == 15",
        ],
    );
    assert_eq!((r.passed, r.total), (2, 3), "{r:#?}");
    assert_eq!(r.isolation, Isolation::RlimitsOnly);
    let warning = r.isolation_warning.clone().unwrap_or_default();
    assert!(
        warning.contains("network access is NOT blocked"),
        "{warning}"
    );
    assert!(r.to_verdict("").detail.contains("rlimits_only"));
    let r = run(&judge, "import os\nos._exit(0)", &["assert True"]);
    assert_eq!(r.passed, 0, "{r:#?}");
}

/// Without a network namespace the host's loopback IS reachable: the fallback is documented
/// as not blocking the network, and its reports say so instead of pretending.
#[test]
fn rlimits_only_does_not_block_the_network() {
    let _serial = serial();
    let judge = rlimits_judge();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let r = run(&judge, CONNECT, &[&format!("assert connected({port})")]);
    assert_eq!(
        (r.passed, r.isolation),
        (1, Isolation::RlimitsOnly),
        "{r:#?}"
    );
    assert!(r
        .isolation_warning
        .is_some_and(|w| w.contains("NOT blocked")));
}

#[test]
fn rlimits_only_kills_an_infinite_loop_and_its_children() {
    let _serial = serial();
    assert_loop_and_children_killed(&rlimits_judge());
}

/// A program that starts a long sleeper, ignores the per-assert alarm and spins: the wall
/// clock must end it, and nothing it started may survive.
fn assert_loop_and_children_killed(judge: &CodeJudge) {
    let marker = format!("maspo-sleeper-{}", random_hex(8).expect("urandom"));
    let code = format!(
        "import signal, subprocess, sys\n\
         subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)', {marker:?}])\n\
         signal.signal(signal.SIGALRM, signal.SIG_IGN)\n\
         while True:\n    pass\n\
         def f():\n    return 1"
    );
    let start = Instant::now();
    let seen = AtomicBool::new(false);
    let r = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            while start.elapsed() < Duration::from_secs(2) && !seen.load(Ordering::Relaxed) {
                seen.store(!pids_with(&marker).is_empty(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let r = run(judge, &code, &["assert f() == 1"]);
        let _ = watcher.join();
        r
    });
    assert!(
        seen.load(Ordering::Relaxed),
        "the sleeper never started: {r:#?}"
    );
    assert!(r.timed_out && r.passed == 0, "{r:#?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(r.to_verdict(&code).detail.contains("timed out"));
    assert_eq!(survivors(&marker), Vec::<String>::new(), "sleeper survived");
}

#[test]
fn more_hostile_programs_are_contained_and_judged_failures() {
    let Some(judge) = ns_judge() else { return };
    let _serial = serial();
    // IPv6 loopback and name resolution.
    if let Ok(l6) = TcpListener::bind("[::1]:0") {
        let port = l6.local_addr().unwrap().port();
        let code = format!("import socket\ndef v6():\n    socket.create_connection(('::1', {port}), timeout=0.5).close()\n    return True");
        let r = run(&judge, &code, &["assert v6()"]);
        assert_eq!(r.passed, 0, "reached the host over IPv6: {r:#?}");
    }
    let code =
        "import socket\ndef resolves():\n    return len(socket.getaddrinfo('example.com', 80)) > 0";
    let r = run(&judge, code, &["assert resolves()"]);
    assert_eq!(r.passed, 0, "{r:#?}");
    // Closed stdout and stderr: results still arrive (on the harness's own descriptor), and a
    // wrong answer is still wrong.
    let code = "import os\nos.close(1)\nos.close(2)\ndef add(a, b):\n    return a - b";
    let r = run(
        &judge,
        code,
        &["assert add(1, 2) == 3", "assert add(2, 2) == 0"],
    );
    assert_eq!((r.passed, r.total, r.finished), (1, 2, true), "{r:#?}");
    // Sleeping past the deadline, and SIGTERM ignored: killed in time.
    for code in [
        "import time\ntime.sleep(100)\ndef f():\n    return 1",
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass",
    ] {
        let t0 = Instant::now();
        let r = run(&judge, code, &["assert f() == 1"]);
        assert_eq!(r.passed, 0, "{r:#?}");
        assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    }
    // A double-forked daemon that outlives its parent leaves no process behind.
    let marker = format!(
        "77.{}",
        random_hex(4)
            .unwrap()
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
            + "1"
    );
    let code = format!(
        "import os\ndef daemon():\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n            os.execvp('sleep', ['sleep', '{marker}'])\n        os._exit(0)\n    return False"
    );
    let r = run(&judge, &code, &["assert daemon()"]);
    assert_eq!(r.passed, 0, "{r:#?}");
    assert!(survivors(&marker).is_empty(), "the daemon survived");
    // Other processes are invisible (PID namespace) and cannot be traced.
    let host_pid = std::process::id();
    let code = format!(
        "import os, ctypes\ndef sees_host():\n    return os.path.exists('/proc/{host_pid}/environ') or os.path.exists('/proc/{host_pid}/cmdline')\n\
def traces_init():\n    libc = ctypes.CDLL(None, use_errno=True)\n    return libc.ptrace(16, 1, 0, 0) == 0"
    );
    let r = run(
        &judge,
        &code,
        &["assert sees_host()", "assert traces_init()"],
    );
    assert_eq!(r.passed, 0, "{r:#?}");
}

#[test]
fn the_project_models_and_run_directories_are_hidden() {
    let Some(judge) = ns_judge() else { return };
    let code = "import os\ndef reads(p):\n    try:\n        with open(p, 'rb') as f:\n            return len(f.read(16)) > 0\n    except OSError:\n        return False\n\
def lists(p):\n    try:\n        return len(os.listdir(p)) > 0\n    except OSError:\n        return False";
    let cwd = std::env::current_dir().unwrap();
    let models = crate::common::models_dir();
    // Absolute: the program runs in its own /tmp. (Where the data folder is absent, the path
    // does not exist either way and the assert still must fail.)
    let data = std::path::absolute(maspo::tasks::default_data_dir()).unwrap();
    let asserts = [
        format!("assert lists({:?})", cwd.display().to_string()),
        format!("assert lists({:?})", models.display().to_string()),
        format!(
            "assert reads({:?})",
            models.join("catalog.toml").display().to_string()
        ),
        format!(
            "assert reads({:?})",
            cwd.join("Cargo.toml").display().to_string()
        ),
        // The default dataset folder: its files hold the gold tests.
        format!(
            "assert lists({:?}) or reads({:?})",
            data.display().to_string(),
            data.join("mbpp/sanitized-mbpp.jsonl").display().to_string()
        ),
        // The system stays usable.
        "assert lists('/usr/lib') and reads('/etc/hostname') or lists('/usr/lib')".to_string(),
    ];
    let asserts: Vec<&str> = asserts.iter().map(String::as_str).collect();
    let r = run(&judge, code, &asserts);
    let passed: Vec<bool> = r.per_assert.iter().map(|a| a.passed).collect();
    assert_eq!(passed, [false, false, false, false, false, true], "{r:#?}");
}

/// The hole of a harness that shares the candidate's interpreter, closed by design: the
/// candidate runs in a process (and sandbox) of its own that never sees an assert, an expected
/// value or the report channel; the checker compares plain values it decoded itself.
#[test]
fn programs_cannot_forge_results_or_fake_equality() {
    let Some(judge) = ns_judge() else { return };
    let asserts = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"];
    // Walking the interpreter's frames and heap for the harness's reporter, then reporting
    // both asserts passed (judged 2/2 passed when harness and candidate shared a process).
    let frames = "import gc, os, sys\n\
def add(a, b):\n    found = []\n    f = sys._getframe()\n    while f is not None:\n        \
found += [v for v in list(f.f_locals.values()) if callable(v) and getattr(v, '__name__', '') in ('report', 'send')]\n        \
f = f.f_back\n    \
found += [o for o in gc.get_objects() if callable(o) and getattr(o, '__name__', '') in ('report', 'send')]\n    \
for fn in found:\n        for line in ('0 PASS', '1 PASS', 'DONE 2'):\n            try:\n                fn(line)\n            except Exception:\n                pass\n    \
return a - b";
    // An object equal to everything, and a str subclass that is.
    let equal = "def add(a, b):\n    class Any:\n        def __eq__(self, other):\n            return True\n    return Any()";
    let equal_int = "def add(a, b):\n    class Int(int):\n        def __eq__(self, other):\n            return True\n    return Int(0)";
    // Forged answers on every descriptor, claiming `true` for the next requests.
    let forged = "import os\n\
def add(a, b):\n    for fd in os.listdir('/proc/self/fd'):\n        for n in range(1, 8):\n            try:\n                os.write(int(fd), ('{\"id\": %d, \"ok\": true}\\n' % n).encode())\n            except OSError:\n                pass\n    return None";
    // An int subclass whose `__int__` (and float's `__float__`) names the expected value: the
    // codec sends the value the object holds, as `==` in one process would see it.
    let lying_int = "def add(a, b):\n    class Int(int):\n        def __int__(self):\n            return a + b\n        def __index__(self):\n            return a + b\n    return Int(a - b)";
    let lying_float = "def add(a, b):\n    class F(float):\n        def __float__(self):\n            return float(a + b)\n    return F(a - b)";
    for (name, code) in [
        ("frames", frames),
        ("equal", equal),
        ("equal_int", equal_int),
        ("lying_int", lying_int),
        ("lying_float", lying_float),
        ("forged", forged),
    ] {
        let r = run(&judge, code, &asserts);
        assert_eq!(r.passed, 0, "{name}: {r:#?}");
        assert!(!r.to_verdict(code).correct, "{name}");
    }
    // The same judge still passes honest programs whose values travel as plain data.
    let honest = "class Box:\n    def __init__(self, v):\n        self.v = v\n    def get(self):\n        return self.v\n\
def add(a, b):\n    return a + b\ndef gen(n):\n    yield from range(n)\ndef apply(fn, xs):\n    return [fn(x) for x in xs]\n\
def pair():\n    return chr(0xd800) + chr(0xdfff)";
    let r = run(
        &judge,
        honest,
        &[
            "assert add(1, 2) == 3 and add(2, 2) == 4",
            "assert list(gen(3)) == [0, 1, 2] and sum(gen(4)) == 6",
            "assert Box((1, 2)).get() == (1, 2) and Box([1]).v == [1]",
            "assert apply(lambda x: x * 2, [1, 2]) == [2, 4]",
            "assert add(2 ** 70, 1) == 2 ** 70 + 1 and add(0.1, 0.2) != 0.3",
            // Surrogate code points arrive as sent (JSON text would join this pair into one
            // character, U+103FF).
            "assert pair() != chr(0x103ff) and len(pair()) == 2 and pair() == chr(0xd800) + chr(0xdfff)",
        ],
    );
    assert_eq!((r.passed, r.total), (6, 6), "{r:#?}");
}

/// The reference solutions of MBPP, HumanEval-ET and original HumanEval (whose one assert calls
/// the dataset's `check(candidate)` from the checker's prelude) through the code judge as
/// `maspo eval` runs it: values cross between runner and checker, so every honest solution
/// must still pass. The few that fail name a dataset problem (stated below), never the judge.
#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn reference_solutions_pass_the_two_process_judge() {
    if ns_judge().is_none() {
        return;
    }
    let data = crate::common::data_dir();
    reference_solutions_pass(
        &data,
        &[
            ("mbpp", "mbpp/sanitized-mbpp.jsonl"),
            ("humaneval", "humaneval/HumanEval.jsonl.gz"),
        ],
        427 + 164,
    );
}

/// The same for HumanEval-ET, which is not shipped (its extra tests carry no licence).
#[test]
#[cfg(feature = "humaneval-et")] // not shipped: MASPO_DATA_DIR=DIR cargo test --features humaneval-et humaneval_et
fn humaneval_et_reference_solutions_pass_the_two_process_judge() {
    if ns_judge().is_none() {
        return;
    }
    let data = std::path::PathBuf::from(
        std::env::var_os("MASPO_DATA_DIR")
            .expect("set MASPO_DATA_DIR to a data directory holding humaneval-et/"),
    );
    reference_solutions_pass(
        &data,
        &[("humaneval_et", "humaneval-et/HumanEval_ET.jsonl")],
        164,
    );
}

fn reference_solutions_pass(data: &Path, sets: &[(&str, &str)], expected_total: usize) {
    use std::io::Read as _;
    let _serial = serial();
    // The limits `maspo eval` uses.
    let judge = CodeJudge::from_policy(SandboxPolicy {
        isolation: IsolationMode::Namespaces,
        ..SandboxPolicy::default()
    })
    .unwrap();
    let patient = CodeJudge::from_policy(SandboxPolicy {
        isolation: IsolationMode::Namespaces,
        assert_timeout_ms: 20_000,
        timeout_ms: 60_000,
        cpu_secs: 60,
        ..SandboxPolicy::default()
    })
    .unwrap();
    let rows = |rel: &str| -> Vec<serde_json::Value> {
        let mut text = String::new();
        let file = std::fs::File::open(data.join(rel)).unwrap();
        if rel.ends_with(".gz") {
            flate2::read::GzDecoder::new(file)
                .read_to_string(&mut text)
                .unwrap();
        } else {
            std::io::BufReader::new(file)
                .read_to_string(&mut text)
                .unwrap();
        }
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut failures = Vec::new();
    let mut total = 0;
    for &(task, rel) in sets {
        let loaded = maspo::tasks::load_task(task, data).unwrap();
        let raw = rows(rel);
        assert_eq!(loaded.examples.len(), raw.len(), "{task}");
        let codes: Vec<String> = raw
            .iter()
            .map(|r| match r.get("code") {
                Some(code) => code.as_str().unwrap().to_string(),
                None => format!(
                    "{}{}",
                    r["prompt"].as_str().unwrap(),
                    r["canonical_solution"].as_str().unwrap()
                ),
            })
            .collect();
        let jobs: Vec<(&str, &CodeTests)> = loaded
            .examples
            .iter()
            .zip(&codes)
            .map(|(e, code)| match &e.gold {
                Gold::Code(t) => (code.as_str(), t),
                Gold::Answer(_) => panic!("{task}: answer gold"),
            })
            .collect();
        for ((e, job), report) in loaded.examples.iter().zip(&jobs).zip(judge.run_many(&jobs)) {
            let mut report = report.expect("systemic sandbox failure");
            total += 1;
            if !report.pass_at_1() && report.to_verdict("").detail.contains("Timeout") {
                // A slow reference (MBPP 123 needs seconds of pure Python) on a busy machine:
                // judged again alone with room to finish; it must then pass like the rest.
                report = patient
                    .run_tests(job.0, job.1)
                    .expect("systemic sandbox failure");
                eprintln!(
                    "  {task}/{}: timed out under load, judged again alone",
                    e.id
                );
            }
            if !report.pass_at_1() {
                failures.push(format!("{task}/{}: {}", e.id, report.to_verdict("").detail));
            }
        }
    }
    eprintln!(
        "{} of {total} reference solutions pass",
        total - failures.len()
    );
    for f in &failures {
        eprintln!("  {}", f.lines().take(3).collect::<Vec<_>>().join(" | "));
    }
    assert_eq!(total, expected_total);
    // HumanEval-ET's own defects (identical under the one-process harness this replaced):
    // asserts that name undefined variables (38, 44, 50, 53, 151), exact float comparisons the
    // reference misses (2), and prime_fib(10+) past the 3 s limit on a slow machine (39).
    let known = [2, 38, 39, 44, 50, 53, 151].map(|i| format!("humaneval_et/HumanEval/{i}:"));
    let unexpected: Vec<&String> = failures
        .iter()
        .filter(|f| !known.iter().any(|k| f.starts_with(k.as_str())))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}
