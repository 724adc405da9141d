//! The parent side of the process sandbox: feeds stdin, reads stdout and stderr with a cap,
//! enforces the wall-clock limit and kills the process group.
//!
//! One thread multiplexes all three pipes with `poll`, so a program that prints gigabytes
//! neither blocks (the pipes are always drained) nor grows memory (bytes past the cap are
//! dropped), and a program that never reads stdin cannot wedge the writer. It must not leave a
//! process of the group alive: the group is SIGKILLed on timeout and again once the leader has
//! exited (before it is reaped, so its pid, the group id, cannot have been reused).

use super::{ExitKind, SandboxPolicy};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long output is still drained after the program exited (its background processes are
/// killed at exit; only processes that escaped the group can hold the pipes longer).
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// Longest poll sleep, i.e. the latency of noticing an exit that closes no pipe.
const TICK_MS: u64 = 20;
/// Longest marked line kept; harness lines are far shorter.
const MAX_MARKED_LINE: usize = 4096;
/// Most marked lines kept.
const MAX_MARKED_LINES: usize = 1 << 16;

/// Bytes kept up to a cap.
#[derive(Debug, Default)]
pub(super) struct Capture {
    limit: usize,
    pub(super) data: Vec<u8>,
    pub(super) truncated: bool,
}

impl Capture {
    fn new(limit: usize) -> Self {
        Capture {
            limit,
            ..Capture::default()
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.data.len());
        self.data.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.truncated |= bytes.len() > room;
    }
}

#[derive(Debug, PartialEq)]
enum LineState {
    /// At most `marker.len()` bytes of the line seen, all matching the marker so far.
    Undecided,
    /// The line began with the marker.
    Marked,
    /// An ordinary line.
    Plain,
}

/// Stdout split into marked lines (kept whole, past the cap) and everything else (capped).
#[derive(Debug)]
pub(super) struct MarkedStream {
    marker: Vec<u8>,
    state: LineState,
    line: Vec<u8>,
    pub(super) plain: Capture,
    pub(super) lines: Vec<String>,
}

impl MarkedStream {
    pub(super) fn new(marker: &[u8], limit: usize) -> Self {
        MarkedStream {
            marker: marker.to_vec(),
            state: if marker.is_empty() {
                LineState::Plain
            } else {
                LineState::Undecided
            },
            line: Vec::new(),
            plain: Capture::new(limit),
            lines: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        if self.marker.is_empty() {
            return self.plain.push(bytes);
        }
        let mut plain_from = 0;
        for (i, &b) in bytes.iter().enumerate() {
            match self.state {
                LineState::Plain if b == b'\n' => {
                    self.plain.push(&bytes[plain_from..=i]);
                    plain_from = i + 1;
                    self.state = LineState::Undecided;
                }
                LineState::Plain => {}
                LineState::Marked if b == b'\n' => self.end_marked_line(),
                LineState::Marked => {
                    if self.line.len() < MAX_MARKED_LINE {
                        self.line.push(b);
                    }
                }
                LineState::Undecided => plain_from = self.decide(b, i, plain_from),
            }
        }
        if self.state == LineState::Plain {
            self.plain.push(&bytes[plain_from..]);
        }
    }

    /// Feeds one byte of a line not yet known to be marked; returns where plain bytes of this
    /// chunk now start.
    fn decide(&mut self, b: u8, i: usize, plain_from: usize) -> usize {
        let at = self.line.len();
        if b != b'\n' && self.marker[at] == b {
            self.line.push(b);
            if self.line.len() == self.marker.len() {
                self.state = LineState::Marked;
                self.line.clear();
            }
            return plain_from;
        }
        // Not marked: the bytes held back so far become plain output.
        let held = std::mem::take(&mut self.line);
        self.plain.push(&held);
        if b == b'\n' {
            self.plain.push(b"\n");
            return i + 1;
        }
        self.state = LineState::Plain;
        i
    }

    fn end_marked_line(&mut self) {
        if self.lines.len() < MAX_MARKED_LINES {
            let line = std::mem::take(&mut self.line);
            self.lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        self.line.clear();
        self.state = LineState::Undecided;
    }

    /// At end of output: an unfinished plain prefix is output; an unfinished marked line is
    /// dropped (the harness always ends its lines).
    fn finish(&mut self) {
        if self.state == LineState::Undecided {
            let held = std::mem::take(&mut self.line);
            self.plain.push(&held);
        }
    }
}

/// What the parent saw.
pub(super) struct Finished {
    pub(super) exit: ExitKind,
    pub(super) stdout: MarkedStream,
    pub(super) stderr: Capture,
    pub(super) timed_out: bool,
    pub(super) wall: Duration,
    /// Output pipes were still open after the grace period (only possible without a pid
    /// namespace, from processes that left the group).
    pub(super) pipes_left_open: bool,
}

struct Pipes {
    stdin: Option<ChildStdin>,
    input: Vec<u8>,
    written: usize,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
}

/// Runs `child` to completion, timeout or `stop` (checked every tick: the group is killed
/// then, without counting as a timeout); see the module docs.
pub(super) fn supervise(
    mut child: Child,
    input: &[u8],
    marker: &[u8],
    policy: &SandboxPolicy,
    stop: &AtomicBool,
) -> Finished {
    let pid = child.id() as libc::pid_t;
    let mut pipes = Pipes {
        stdin: child.stdin.take(),
        input: input.to_vec(),
        written: 0,
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    };
    pipes.set_nonblocking();
    let mut stdout = MarkedStream::new(marker, policy.max_output_bytes);
    let mut stderr = Capture::new(policy.max_output_bytes);
    let start = Instant::now();
    let deadline = start + Duration::from_millis(policy.timeout_ms);
    let (mut timed_out, mut exited_at) = (false, None::<Instant>);
    loop {
        let now = Instant::now();
        if exited_at.is_none() && has_exited(pid) {
            kill_group(pid);
            exited_at = Some(now);
        }
        if exited_at.is_none() && now >= deadline && !timed_out {
            timed_out = true;
            kill_group(pid);
        }
        if exited_at.is_none() && stop.load(Ordering::Relaxed) {
            // Not reaped yet (no exit seen), so the pid and group id are still ours.
            kill_group(pid);
        }
        if let Some(at) = exited_at {
            if !pipes.output_open() || now >= at + DRAIN_GRACE {
                break;
            }
        }
        let wait = deadline.saturating_duration_since(now).as_millis() as u64;
        pipes.poll_once(wait.clamp(1, TICK_MS), &mut stdout, &mut stderr);
    }
    let wall = exited_at.unwrap_or_else(Instant::now) - start;
    let pipes_left_open = pipes.output_open();
    drop(pipes);
    stdout.finish();
    Finished {
        exit: reap(&mut child),
        stdout,
        stderr,
        timed_out,
        wall,
        pipes_left_open,
    }
}

impl Pipes {
    fn set_nonblocking(&self) {
        let fds = [
            self.stdin.as_ref().map(|p| p.as_raw_fd()),
            self.stdout.as_ref().map(|p| p.as_raw_fd()),
            self.stderr.as_ref().map(|p| p.as_raw_fd()),
        ];
        for fd in fds.into_iter().flatten() {
            // SAFETY: fcntl on a pipe descriptor we own.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
    }

    fn output_open(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some()
    }

    /// One `poll` over the open pipes, then whatever I/O is ready.
    fn poll_once(&mut self, timeout_ms: u64, stdout: &mut MarkedStream, stderr: &mut Capture) {
        if self.stdin.is_some() && self.written >= self.input.len() {
            self.stdin = None; // all written: close, so the program sees end of input
        }
        let fd = |p: Option<i32>, events| libc::pollfd {
            fd: p.unwrap_or(-1), // poll ignores negative descriptors
            events,
            revents: 0,
        };
        let mut fds = [
            fd(self.stdin.as_ref().map(|p| p.as_raw_fd()), libc::POLLOUT),
            fd(self.stdout.as_ref().map(|p| p.as_raw_fd()), libc::POLLIN),
            fd(self.stderr.as_ref().map(|p| p.as_raw_fd()), libc::POLLIN),
        ];
        // SAFETY: `fds` is a valid array of three pollfd.
        unsafe { libc::poll(fds.as_mut_ptr(), 3, timeout_ms as libc::c_int) };
        if fds[0].revents != 0 {
            self.write_input();
        }
        if fds[1].revents != 0 && drain(&mut self.stdout, |b| stdout.push(b)) {
            self.stdout = None;
        }
        if fds[2].revents != 0 && drain(&mut self.stderr, |b| stderr.push(b)) {
            self.stderr = None;
        }
    }

    fn write_input(&mut self) {
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        match stdin.write(&self.input[self.written..]) {
            Ok(n) => self.written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => self.stdin = None, // the program closed its stdin: nothing more to give
        }
    }
}

/// Reads what is available; true at end of file (or on a read error).
fn drain<R: Read>(pipe: &mut Option<R>, mut sink: impl FnMut(&[u8])) -> bool {
    let Some(reader) = pipe.as_mut() else {
        return false;
    };
    let mut buf = [0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => sink(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Whether the child has exited, without reaping it (so its pid stays reserved).
fn has_exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid writes into the zeroed siginfo we pass.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) == 0 && info.si_pid() != 0
    }
}

fn kill_group(pid: libc::pid_t) {
    // SAFETY: plain signal sends. The child called setsid, so its pid is its group id.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

fn reap(child: &mut Child) -> ExitKind {
    match child.wait() {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitKind::Code(code),
            (None, Some(signal)) => ExitKind::Signal(signal),
            (None, None) => ExitKind::Code(-1),
        },
        Err(_) => ExitKind::Code(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(marker: &str, limit: usize, chunks: &[&str]) -> MarkedStream {
        let mut s = MarkedStream::new(marker.as_bytes(), limit);
        for c in chunks {
            s.push(c.as_bytes());
        }
        s.finish();
        s
    }

    #[test]
    fn marked_lines_are_split_out_across_chunks() {
        let s = feed(
            "ab12 ",
            1000,
            &["hi\nab1", "2 0 PASS\nab12", "x\n\nab12 DONE 1\ntail"],
        );
        assert_eq!(s.lines, vec!["0 PASS", "DONE 1"]);
        assert_eq!(String::from_utf8_lossy(&s.plain.data), "hi\nab12x\n\ntail");
    }

    #[test]
    fn marker_must_start_the_line() {
        let s = feed("ab12 ", 1000, &["xab12 0 PASS\n", "ab1\n", "ab12 1 PASS"]);
        assert!(s.lines.is_empty(), "{:?}", s.lines);
        assert_eq!(
            String::from_utf8_lossy(&s.plain.data),
            "xab12 0 PASS\nab1\n"
        );
    }

    #[test]
    fn marked_lines_pass_the_cap_and_plain_output_is_cut() {
        let big = "y".repeat(10_000);
        let s = feed("n ", 100, &[&big, "\nn 0 PASS\n", &big, "\n", "n DONE 1\n"]);
        assert_eq!(s.lines, vec!["0 PASS", "DONE 1"]);
        assert_eq!(s.plain.data.len(), 100);
        assert!(s.plain.truncated);
    }

    #[test]
    fn no_marker_means_plain_capture() {
        let s = feed("", 4, &["abcdef"]);
        assert_eq!(s.plain.data, b"abcd");
        assert!(s.plain.truncated && s.lines.is_empty());
    }
}
