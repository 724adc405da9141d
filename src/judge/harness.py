# maspo code-judge harness (trusted; embedded in the binary, run with `python -c` inside the
# sandbox). It reads one job from stdin as JSON -- {"nonce", "program", "asserts",
# "assert_timeout"} -- runs the candidate program in a fresh namespace and then each assert on
# its own, and reports on a private duplicate of stdout:
#
#     <nonce> LOAD <error>          the program failed to load (every assert counts as failed)
#     <nonce> <i> PASS              assert i passed
#     <nonce> <i> FAIL <error>      assert i failed
#     <nonce> DONE <n>              all n asserts ran
#
# Each line is preceded by a newline, so it starts a line even after unterminated candidate
# output, and written with one os.write, so it is never interleaved. The nonce arrives on stdin,
# which is read to the end and replaced by /dev/null before any candidate code runs; it is never
# in the environment, argv or a file. Printing "PASS" lines, exit(0), sys.exit or os._exit
# therefore cannot fake a result: results that never arrive count as failures. (Code that walks
# the interpreter's own frames could find the nonce; the sandbox still contains such code.)


def _harness():
    import builtins
    import json
    import os
    import signal
    import sys

    raw = sys.stdin.buffer.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    job = json.loads(raw)
    del raw
    prefix = ("\n" + job.pop("nonce") + " ").encode()
    out = os.dup(1)
    write, exit_now = os.write, os._exit
    limit = float(job["assert_timeout"])
    setitimer, real = signal.setitimer, signal.ITIMER_REAL

    def report(text):
        try:
            write(out, prefix + text.encode("utf-8", "replace") + b"\n")
        except BaseException:
            pass

    class Timeout(BaseException):
        pass

    def on_alarm(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)

    def describe(exc):
        if isinstance(exc, Timeout):
            return "Timeout: exceeded %g s" % limit
        name = type(exc).__name__
        try:
            text = str(exc)
        except BaseException:
            text = ""
        return " ".join((name + ": " + text if text else name).split())[:300]

    def run(source, label, namespace):
        """None when `source` ran; else a one-line reason. Catches BaseException: SystemExit,
        KeyboardInterrupt and the alarm are failures of the candidate, not of the harness."""
        try:
            setitimer(real, limit)
            try:
                exec(compile(source, label, "exec"), namespace)
                return None
            except BaseException as exc:
                return describe(exc)
            finally:
                setitimer(real, 0)
        except BaseException as exc:
            return "Timeout: exceeded %g s" % limit if isinstance(exc, Timeout) else "error"

    # Not "__main__": like the reference evaluators, a script's `if __name__ == "__main__"`
    # demo block (which may wait on input()) is not run.
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    asserts = job["asserts"]
    error = run(job["program"], "<candidate>", namespace)
    if error is not None:
        report("LOAD " + error)
    else:
        for index, source in enumerate(asserts):
            error = run(source, "<assert %d>" % index, namespace)
            report("%d PASS" % index if error is None else "%d FAIL %s" % (index, error))
    report("DONE %d" % len(asserts))
    try:
        sys.__stdout__.flush()
        sys.__stderr__.flush()
    except BaseException:
        pass
    # Skip atexit hooks and non-daemon threads the candidate may have left behind.
    exit_now(0)


_harness()
