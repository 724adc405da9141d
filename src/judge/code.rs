//! The code judge: runs a candidate program against its asserts in a [`Sandbox`] and turns the
//! per-assert results into a [`TestReport`] and a [`Verdict`] (pass@1 and the fraction of
//! asserts passed).
//!
//! The candidate and the tests never share a process. Each judgement is a pair of sandboxed
//! programs ([`Sandbox::run_pair`]): the *runner* (`harness/run.py`) loads the candidate and
//! answers requests — call this function with these arguments, read this attribute — with
//! values; the *checker* (`harness/check.py`, trusted) runs the tests' prelude and asserts,
//! where every name of the program is a proxy for such requests, decodes the answers into
//! plain builtin values (`harness/codec.py`) and compares them itself. The runner never sees
//! an assert, an expected value or the report channel, so a program that walks the
//! interpreter's frames, returns an object equal to everything, prints "PASS" lines or writes
//! forged answers gets no further than its own return values.
//!
//! Owns program assembly (import lines, the `import math` rule), the report protocol (a random
//! nonce per run on the checker's stdout; only lines that start with it count) and parallel
//! judging. It must not spawn processes itself: every run goes through the sandbox.

use super::sandbox::{
    random_hex, Isolation, ProcessSandbox, PythonJob, RunOutcome, Sandbox, SandboxError,
    SandboxPolicy,
};
use super::{Judge, JudgeItem, Verdict};
use crate::tasks::{CodeTests, Gold};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The checker (trusted: runs the asserts on values), executed with `python -c`.
const CHECKER: &str = concat!(
    include_str!("harness/codec.py"),
    include_str!("harness/check.py")
);
/// The runner (untrusted: loads the candidate, answers the checker's requests).
const RUNNER: &str = concat!(
    include_str!("harness/codec.py"),
    include_str!("harness/run.py")
);
/// Bytes of nonce (32 hex digits).
const NONCE_BYTES: usize = 16;
/// Characters of stderr kept in a report.
const STDERR_TAIL: usize = 600;

/// The result of one assert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssertResult {
    /// Position in [`CodeTests::asserts`].
    pub index: usize,
    /// It ran and passed.
    pub passed: bool,
    /// Why it failed (exception type and message, or why it never ran), one short line.
    pub error: Option<String>,
}

/// The outcome of running one program against its asserts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestReport {
    /// Asserts that passed.
    pub passed: usize,
    /// Asserts in the tests.
    pub total: usize,
    /// One result per assert, in order.
    pub per_assert: Vec<AssertResult>,
    /// The program did not load (syntax error, exception or exit at top level).
    pub load_error: Option<String>,
    /// The wall-clock limit killed the program.
    pub timed_out: bool,
    /// The harness reported its final line (false: the program exited, crashed or timed out).
    pub finished: bool,
    /// The isolation it ran under.
    pub isolation: Isolation,
    /// What that isolation does not cover, when weaker than namespaces.
    pub isolation_warning: Option<String>,
    /// The program printed more than the output cap.
    pub stdout_truncated: bool,
    /// The end of its stderr, for feedback on crashes.
    pub stderr_tail: String,
    /// Wall-clock time of the run.
    pub wall_ms: u64,
}

impl TestReport {
    /// All asserts passed (and there was at least one).
    pub fn pass_at_1(&self) -> bool {
        self.total > 0 && self.passed == self.total
    }

    /// Fraction of asserts passed; 0 without asserts.
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }

    /// The verdict: correct on pass@1, score the fraction, the reasons in `detail`.
    pub fn to_verdict(&self, code: &str) -> Verdict {
        Verdict {
            correct: self.pass_at_1(),
            score: self.fraction(),
            prediction: code.to_string(),
            detail: self.detail(),
        }
    }

    fn detail(&self) -> String {
        if self.total == 0 {
            return "no tests: cannot judge code without asserts".into();
        }
        let mut d = format!(
            "passed {}/{} asserts [isolation: {}]",
            self.passed,
            self.total,
            self.isolation.as_str()
        );
        if let Some(e) = &self.load_error {
            let _ = write!(d, "\nprogram failed to load: {e}");
        }
        if self.timed_out {
            let _ = write!(
                d,
                "\ntimed out after {} ms; process group killed",
                self.wall_ms
            );
        }
        if self.load_error.is_none() {
            for r in self.per_assert.iter().filter(|r| !r.passed) {
                let why = r.error.as_deref().unwrap_or("failed");
                let _ = write!(d, "\nassert {} failed: {why}", r.index);
            }
        }
        if self.stdout_truncated {
            d.push_str("\nstdout exceeded the output cap and was cut");
        }
        if (!self.finished || self.load_error.is_some()) && !self.stderr_tail.is_empty() {
            let _ = write!(d, "\nstderr: {}", self.stderr_tail);
        }
        if let Some(w) = &self.isolation_warning {
            let _ = write!(d, "\nwarning: {w}");
        }
        d
    }
}

/// Judges code by running its tests in a sandbox.
#[derive(Clone)]
pub struct CodeJudge {
    sandbox: Arc<dyn Sandbox>,
}

impl std::fmt::Debug for CodeJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeJudge")
            .field("isolation", &self.sandbox.isolation())
            .field("policy", self.sandbox.policy())
            .finish()
    }
}

impl CodeJudge {
    /// A judge over any sandbox.
    pub fn new(sandbox: Arc<dyn Sandbox>) -> Self {
        CodeJudge { sandbox }
    }

    /// A judge over a [`ProcessSandbox`] with this policy (probes python and isolation).
    pub fn from_policy(policy: SandboxPolicy) -> Result<Self, SandboxError> {
        Ok(Self::new(Arc::new(ProcessSandbox::new(policy)?)))
    }

    /// A judge with the default [`SandboxPolicy`].
    pub fn new_default() -> Result<Self, SandboxError> {
        Self::from_policy(SandboxPolicy::default())
    }

    /// A judge with the default policy that also hides `dirs` (the dataset folder: its files
    /// hold the tests a program could otherwise read).
    pub fn hiding(dirs: &[std::path::PathBuf]) -> Result<Self, SandboxError> {
        let mut policy = SandboxPolicy::default();
        for dir in dirs {
            if !policy.hide_paths.contains(dir) {
                policy.hide_paths.push(dir.clone());
            }
        }
        Self::from_policy(policy)
    }

    /// The sandbox it runs programs in.
    pub fn sandbox(&self) -> &dyn Sandbox {
        self.sandbox.as_ref()
    }

    /// Runs `code` against `tests`. Errors are systemic only (python missing, cannot spawn);
    /// anything the program does is in the report.
    pub fn run_tests(&self, code: &str, tests: &CodeTests) -> Result<TestReport, SandboxError> {
        if tests.asserts.is_empty() {
            return Ok(self.empty_report());
        }
        let nonce = random_hex(NONCE_BYTES).map_err(SandboxError::Random)?;
        let assert_timeout = self.sandbox.policy().assert_timeout_ms as f64 / 1000.0;
        let checker = PythonJob {
            script: CHECKER.to_string(),
            stdin: serde_json::json!({
                "nonce": nonce,
                "asserts": tests.asserts,
                "prelude": checker_prelude(tests),
                "entry_point": tests.entry_point,
                "assert_timeout": assert_timeout,
            })
            .to_string()
            .into_bytes(),
            marker: format!("{nonce} ").into_bytes(),
        };
        let runner = PythonJob {
            script: RUNNER.to_string(),
            stdin: serde_json::json!({
                "program": runner_program(code, tests),
                "assert_timeout": assert_timeout,
            })
            .to_string()
            .into_bytes(),
            marker: Vec::new(),
        };
        let (checked, ran) = self.sandbox.run_pair(&checker, &runner)?;
        Ok(report_from(&checked, &ran, tests.asserts.len()))
    }

    /// [`Self::run_tests`] then [`TestReport::to_verdict`].
    pub fn judge(&self, code: &str, tests: &CodeTests) -> Result<Verdict, SandboxError> {
        Ok(self.run_tests(code, tests)?.to_verdict(code))
    }

    /// Runs many programs, at most `policy.max_parallel` at once; results in input order.
    pub fn run_many(&self, jobs: &[(&str, &CodeTests)]) -> Vec<Result<TestReport, SandboxError>> {
        let workers = self
            .sandbox
            .policy()
            .max_parallel
            .clamp(1, jobs.len().max(1));
        let next = AtomicUsize::new(0);
        let slots: Mutex<Vec<Option<Result<TestReport, SandboxError>>>> =
            Mutex::new((0..jobs.len()).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((code, tests)) = jobs.get(i) else {
                        break;
                    };
                    let result = self.run_tests(code, tests);
                    lock(&slots)[i] = Some(result);
                });
            }
        });
        let slots = slots.into_inner().unwrap_or_else(|p| p.into_inner());
        slots
            .into_iter()
            .map(|slot| slot.unwrap_or_else(|| Ok(self.empty_report())))
            .collect()
    }

    fn empty_report(&self) -> TestReport {
        TestReport {
            passed: 0,
            total: 0,
            per_assert: Vec::new(),
            load_error: None,
            timed_out: false,
            finished: false,
            isolation: self.sandbox.isolation(),
            isolation_warning: None,
            stdout_truncated: false,
            stderr_tail: String::new(),
            wall_ms: 0,
        }
    }
}

impl Judge for CodeJudge {
    fn name(&self) -> &str {
        "code"
    }

    /// Runs each item's extracted code (`item.answer`) against its example's tests, in
    /// parallel. A systemic sandbox failure becomes that item's verdict (score 0), since the
    /// trait has no error channel; [`CodeJudge::from_policy`] probes python up front, so this is
    /// rare.
    fn judge(&self, items: &[JudgeItem<'_>]) -> Vec<Verdict> {
        let no_tests = CodeTests::default();
        let jobs: Vec<(&str, &CodeTests)> = items
            .iter()
            .map(|item| match &item.example.gold {
                Gold::Code(tests) if !item.answer.trim().is_empty() => (item.answer, tests),
                _ => ("", &no_tests),
            })
            .collect();
        let reports = self.run_many(&jobs);
        items
            .iter()
            .zip(reports)
            .map(|(item, report)| match (&item.example.gold, report) {
                (Gold::Answer(_), _) => failed(
                    item.answer,
                    "an answer example needs the answer judge, not the code judge",
                ),
                (Gold::Code(_), _) if item.answer.trim().is_empty() => {
                    failed(item.answer, "no code found in the output")
                }
                (Gold::Code(_), Ok(report)) => report.to_verdict(item.answer),
                (Gold::Code(_), Err(e)) => failed(item.answer, &format!("sandbox error: {e}")),
            })
            .collect()
    }
}

fn failed(code: &str, detail: &str) -> Verdict {
    Verdict {
        correct: false,
        score: 0.0,
        prediction: code.to_string(),
        detail: detail.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The program as run: `from __future__` lines first (Python requires it), then the tests'
/// import lines (deduplicated), then `import math` when an assert uses `math.` and nothing
/// imports it, then the code.
pub fn assemble_program(code: &str, tests: &CodeTests) -> String {
    let (future, body): (Vec<&str>, Vec<&str>) = code
        .lines()
        .partition(|l| l.starts_with("from __future__ import"));
    let mut head: Vec<&str> = future;
    for line in tests.imports.iter().map(|l| l.trim()) {
        if !line.is_empty() && !head.contains(&line) {
            head.push(line);
        }
    }
    let uses_math = tests.asserts.iter().any(|a| a.contains("math."));
    if uses_math && !imports_math(code) && !head.iter().any(|l| imports_math(l)) {
        head.push("import math");
    }
    let mut program = head.join("\n");
    program.push('\n');
    program.push_str(&body.join("\n"));
    program.push('\n');
    program
}

/// What the runner loads: [`assemble_program`] with only the tests' one-line import statements
/// (the names the candidate may use without importing them). Original HumanEval's test source,
/// which holds the expected values, stays with the checker.
pub fn runner_program(code: &str, tests: &CodeTests) -> String {
    let imports = tests
        .imports
        .iter()
        .filter(|l| is_import_line(l))
        .cloned()
        .collect();
    assemble_program(
        code,
        &CodeTests {
            imports,
            ..tests.clone()
        },
    )
}

/// What the checker runs before the asserts: the tests' imports and prelude, and `import math`
/// when an assert uses `math.` and nothing imports it.
pub fn checker_prelude(tests: &CodeTests) -> Vec<String> {
    let mut prelude = tests.imports.clone();
    let uses_math = tests.asserts.iter().any(|a| a.contains("math."));
    if uses_math && !prelude.iter().any(|l| imports_math(l)) {
        prelude.push("import math".into());
    }
    prelude
}

/// One `import …` / `from … import …` statement on one line.
fn is_import_line(line: &str) -> bool {
    let line = line.trim();
    !line.contains('\n') && (line.starts_with("import ") || line.starts_with("from "))
}

/// Whether some line is `import math` (possibly among others, e.g. `import os, math`).
fn imports_math(text: &str) -> bool {
    text.lines().any(|line| {
        line.trim()
            .strip_prefix("import ")
            .is_some_and(|names| names.split(',').any(|n| n.trim() == "math"))
    })
}

/// One harness line, the nonce already stripped.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    Load(&'a str),
    Result(usize, Option<&'a str>),
    Done,
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    if let Some(error) = line.strip_prefix("LOAD ") {
        return Some(Line::Load(error));
    }
    if line.starts_with("DONE ") {
        return Some(Line::Done);
    }
    let (index, rest) = line.split_once(' ')?;
    let index = index.parse().ok()?;
    match rest.split_once(' ').unwrap_or((rest, "")) {
        ("PASS", "") => Some(Line::Result(index, None)),
        ("FAIL", error) => Some(Line::Result(index, Some(error))),
        _ => None,
    }
}

/// Builds the report from the checker's marked lines (asserts without a result failed) and
/// the runner's output (the program's own stdout and stderr).
fn report_from(outcome: &RunOutcome, runner: &RunOutcome, total: usize) -> TestReport {
    let mut results: Vec<Option<AssertResult>> = vec![None; total];
    let (mut load_error, mut finished) = (None, false);
    for line in outcome.marked_lines.iter().filter_map(|l| parse_line(l)) {
        match line {
            Line::Load(e) => load_error = load_error.or_else(|| Some(e.to_string())),
            Line::Done => finished = true,
            Line::Result(i, error) if i < total && results[i].is_none() => {
                results[i] = Some(AssertResult {
                    index: i,
                    passed: error.is_none(),
                    error: error.map(str::to_string),
                });
            }
            Line::Result(..) => {}
        }
    }
    let missing = missing_reason(outcome, runner, load_error.is_some());
    let per_assert: Vec<AssertResult> = results
        .into_iter()
        .enumerate()
        .map(|(index, r)| match r {
            Some(r) if load_error.is_none() => r,
            _ => AssertResult {
                index,
                passed: false,
                error: Some(missing.clone()),
            },
        })
        .collect();
    TestReport {
        passed: per_assert.iter().filter(|r| r.passed).count(),
        total,
        per_assert,
        load_error,
        timed_out: outcome.timed_out || runner.timed_out,
        finished,
        isolation: outcome.isolation,
        isolation_warning: outcome.warning.clone().or_else(|| runner.warning.clone()),
        stdout_truncated: runner.stdout_truncated,
        stderr_tail: stderr_tail(outcome, runner),
        wall_ms: outcome.wall_ms.max(runner.wall_ms),
    }
}

/// The program's stderr; the checker's too when it wrote any (a harness failure).
fn stderr_tail(checker: &RunOutcome, runner: &RunOutcome) -> String {
    let program = tail(&runner.stderr, STDERR_TAIL);
    let checker = tail(&checker.stderr, STDERR_TAIL);
    if checker.is_empty() {
        program
    } else {
        format!("{program}\n[checker] {checker}").trim().to_string()
    }
}

fn missing_reason(outcome: &RunOutcome, runner: &RunOutcome, load_failed: bool) -> String {
    if load_failed {
        "not run: the program failed to load".into()
    } else if outcome.timed_out || runner.timed_out {
        "no result: the program hit the wall-clock limit".into()
    } else {
        format!(
            "no result: the program ended before this assert finished ({:?})",
            outcome.exit
        )
    }
}

/// The last `n` characters of `text`, trimmed.
fn tail(text: &str, n: usize) -> String {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(n);
    text.chars().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tests_with(asserts: &[&str], imports: &[&str]) -> CodeTests {
        CodeTests {
            asserts: asserts.iter().map(|s| s.to_string()).collect(),
            imports: imports.iter().map(|s| s.to_string()).collect(),
            entry_point: None,
        }
    }

    #[test]
    fn imports_and_math_are_prepended_once() {
        let t = tests_with(
            &["assert f(4) == math.sqrt(16)"],
            &["from typing import List"],
        );
        let p = assemble_program("def f(x): return x ** 0.5", &t);
        assert_eq!(
            p,
            "from typing import List\nimport math\ndef f(x): return x ** 0.5\n"
        );
        let t = tests_with(&["assert math.pi > 3"], &["import math", "import math"]);
        assert_eq!(
            assemble_program("x = 1", &t).matches("import math").count(),
            1
        );
        let p = assemble_program(
            "import os, math\nx = 1",
            &tests_with(&["assert math.e"], &[]),
        );
        assert_eq!(p.matches("import math").count(), 0);
    }

    #[test]
    fn the_runner_gets_import_lines_and_the_checker_the_whole_prelude() {
        let t = tests_with(
            &["check(add)"],
            &[
                "from typing import List",
                "def check(candidate):\n    assert candidate(1, 2) == 3",
            ],
        );
        let p = runner_program("def add(a, b): return a + b", &t);
        assert_eq!(p, "from typing import List\ndef add(a, b): return a + b\n");
        assert!(
            !p.contains("check"),
            "the expected values stay with the checker: {p}"
        );
        assert_eq!(checker_prelude(&t), t.imports);
        let t = tests_with(&["assert math.isclose(f(1), 1.0)"], &[]);
        assert_eq!(checker_prelude(&t), ["import math"]);
        assert!(runner_program("def f(x): return x", &t).starts_with("import math\n"));
    }

    #[test]
    fn future_imports_stay_first() {
        let t = tests_with(&["assert True"], &["from typing import List"]);
        let p = assemble_program("from __future__ import annotations\ndef f(): pass", &t);
        assert!(p.starts_with("from __future__ import annotations\nfrom typing import List\n"));
    }

    #[test]
    fn harness_lines_parse() {
        assert_eq!(parse_line("3 PASS"), Some(Line::Result(3, None)));
        assert_eq!(
            parse_line("0 FAIL AssertionError"),
            Some(Line::Result(0, Some("AssertionError")))
        );
        assert_eq!(
            parse_line("LOAD SyntaxError: x"),
            Some(Line::Load("SyntaxError: x"))
        );
        assert_eq!(parse_line("DONE 2"), Some(Line::Done));
        assert_eq!(parse_line("0 PASSED"), None);
        assert_eq!(parse_line("x PASS"), None);
    }

    fn outcome(lines: &[&str]) -> RunOutcome {
        RunOutcome {
            exit: super::super::sandbox::ExitKind::Code(0),
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            marked_lines: lines.iter().map(|s| s.to_string()).collect(),
            timed_out: false,
            wall_ms: 1,
            isolation: Isolation::Namespaces,
            warning: None,
        }
    }

    #[test]
    fn missing_and_duplicate_results_fail() {
        let r = report_from(
            &outcome(&["0 PASS", "0 FAIL x", "2 PASS", "9 PASS"]),
            &outcome(&[]),
            3,
        );
        assert_eq!((r.passed, r.total, r.finished), (2, 3, false));
        assert!(r.per_assert[0].passed && !r.per_assert[1].passed && r.per_assert[2].passed);
        assert!((r.fraction() - 2.0 / 3.0).abs() < 1e-9 && !r.pass_at_1());
        let v = r.to_verdict("code");
        assert!(!v.correct && v.detail.contains("assert 1 failed: no result"));
    }

    #[test]
    fn a_load_error_fails_everything() {
        let r = report_from(
            &outcome(&["LOAD SyntaxError: bad", "0 PASS", "DONE 1"]),
            &outcome(&[]),
            1,
        );
        assert_eq!(r.passed, 0);
        assert_eq!(r.load_error.as_deref(), Some("SyntaxError: bad"));
    }

    #[test]
    fn zero_asserts_is_not_correct() {
        let mut r = report_from(&outcome(&[]), &outcome(&[]), 0);
        r.finished = true;
        let v = r.to_verdict("x");
        assert!(!v.correct && v.score == 0.0 && v.detail.contains("no tests"));
    }
}
