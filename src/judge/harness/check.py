# maspo code judge: the checker (TRUSTED side; embedded in the binary after codec.py and run
# with `python -c` in a sandbox of its own). It reads {"nonce", "asserts", "prelude",
# "entry_point", "assert_timeout"} from stdin, runs the tests' prelude (import lines; original HumanEval's
# `check` function) and then each assert in its own namespace, where every global of the
# candidate program is a proxy: calling it, reading an attribute, iterating... is a request to
# the runner (run.py, another process in another sandbox) over the channel ($MASPO_CHANNEL:
# answers in, requests out), and what comes back is decoded into plain builtin values. So the asserts'
# comparisons run here, on values, with the builtins' `==`; the candidate never shares a
# process with this script, never sees an expected value, and cannot reach the report line:
#
#     <nonce> LOAD <error>          the program failed to load (every assert counts as failed)
#     <nonce> <i> PASS              assert i passed
#     <nonce> <i> FAIL <error>      assert i failed
#     <nonce> DONE <n>              all n asserts ran
#
# A runner that stops answering (exit, crash, a request past its time) fails the assert that
# waited and every later one.


def _checker():
    import builtins
    import json
    import os
    import select
    import signal
    import sys
    import time

    try:
        # Not dumpable: where both programs run as one uid (rlimits-only isolation, no pid
        # namespaces), the runner cannot ptrace this process or open its /proc descriptors.
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except BaseException:
        pass
    job = json.loads(sys.stdin.buffer.read())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    prefix = ("\n" + job.pop("nonce") + " ").encode()
    out = os.dup(1)
    answers, requests = [int(fd) for fd in os.environ.pop("MASPO_CHANNEL").split()]
    for fd in (answers, requests):
        os.set_inheritable(fd, False)
    poller = select.poll()
    poller.register(answers, select.POLLIN)
    write, exit_now, monotonic = os.write, os._exit, time.monotonic
    limit = float(job["assert_timeout"])
    # The runner answers a request within its own limit; this much longer it may take to
    # start (an interpreter in a fresh sandbox) or to send a large value.
    grace = 1.0
    startup = 5.0
    max_line = 64 << 20
    setitimer, real = signal.setitimer, signal.ITIMER_REAL

    def report(text):
        try:
            write(out, prefix + text.encode("utf-8", "replace") + b"\n")
        except BaseException:
            pass

    class Timeout(BaseException):
        pass

    class ProgramError(Exception):
        """An exception raised in the program whose type is not a builtin exception."""

    class Gone(BaseException):
        """The runner stopped answering (a BaseException: test code's `except Exception`
        must not turn it into a pass)."""

    def on_alarm(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)

    state = {"gone": None, "id": 0, "deadline": 0.0}
    pending = bytearray()
    callbacks = []

    def read_line(until):
        """The next line from the runner; None when `until` passed, False when it ended."""
        while True:
            cut = pending.find(b"\n")
            if cut >= 0:
                line = bytes(pending[:cut])
                del pending[:cut + 1]
                return line
            if len(pending) > max_line:
                return None
            left = until - monotonic()
            if left <= 0:
                return None
            # poll, not select: the descriptor number may exceed select's limit of 1024.
            if not poller.poll(max(1, int(left * 1000))):
                continue
            chunk = os.read(answers, 1 << 16)
            if not chunk:
                return False
            pending.extend(chunk)

    def send(message):
        data = (json.dumps(message) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[write(requests, view):]

    def receive(until, late):
        """The next message; `late` says what it means when none comes in time."""
        if state["gone"]:
            raise Gone(state["gone"])
        line = read_line(until)
        if line is None or line is False:
            state["gone"] = late if line is None else (
                "NoResult: the program ended (exit, crash or kill)")
            try:
                os.close(requests)
            except OSError:
                pass
            raise Gone(state["gone"])
        try:
            message = json.loads(line)
            if type(message) is not dict:
                raise ValueError("not an object")
            return message
        except Exception:
            state["gone"] = "NoResult: the program sent a malformed answer"
            raise Gone(state["gone"])

    def ref(x):
        if isinstance(x, Remote):
            return object.__getattribute__(x, "_target")
        if callable(x):
            callbacks.append(x)
            return {"cb": len(callbacks) - 1}
        raise TypeError("cannot pass a %s to the program" % type(x).__name__)

    def unref(tag, body):
        if tag == "ref" and type(body) is list and len(body) == 2:
            return Remote({"ref": int(body[0])}, str(body[1]))
        raise ValueError("the program sent a %r value" % (tag,))

    codec = _Codec(ref, unref)

    def rebuild(error):
        name, text = (list(error) + ["", ""])[:2] if type(error) is list else ("Exception", "")
        name, text = str(name), str(text)
        if name == "Timeout":
            raise Timeout()
        cls = getattr(builtins, name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                exc = cls(text)
            except BaseException:
                exc = ProgramError("%s: %s" % (name, text))
        else:
            exc = ProgramError("%s: %s" % (name, text))
        raise exc

    def rpc(op, target, **fields):
        if state["gone"]:
            raise Gone(state["gone"])
        state["id"] += 1
        mine = state["id"]  # a callback served below may send requests of its own
        request = dict(fields, id=mine, op=op, target=target,
                       limit=max(0.01, state["deadline"] - monotonic()))
        try:
            send(request)
        except OSError:
            state["gone"] = "NoResult: the program closed its channel"
            raise Gone(state["gone"])
        while True:
            message = receive(state["deadline"] + grace,
                              "Timeout: exceeded %g s and the program stopped answering" % limit)
            if "callback" in message:
                serve_callback(message)
                continue
            if message.get("id") != mine:
                continue
            if "ok" in message:
                try:
                    return codec.decode(message["ok"])
                except Exception as exc:
                    raise ProgramError("the program returned a value the checker cannot read (%s)" % exc)
            rebuild(message.get("err"))

    def serve_callback(message):
        try:
            fn = callbacks[int(message["callback"])]
            args = codec.decode(message.get("args", {"list": []}))
            kwargs = codec.decode(message.get("kwargs", {"dict": []}))
            answer = {"cb_ok": codec.encode(fn(*args, **kwargs))}
        except (Timeout, Gone):
            raise
        except BaseException as exc:
            answer = {"cb_err": [type(exc).__name__, str(exc)[:300]]}
        send(answer)

    class Remote(object):
        """An object of the program: every use is a request to the runner."""

        __slots__ = ("_target", "_type")

        def __init__(self, target, type_name):
            object.__setattr__(self, "_target", target)
            object.__setattr__(self, "_type", type_name)

        def __call__(self, *args, **kwargs):
            return rpc("call", self._target, args=codec.encode(list(args)),
                       kwargs=codec.encode(dict(kwargs)))

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return rpc("getattr", self._target, name=name)

        def _typed(self, op, kind, what, **fields):
            value = rpc(op, self._target, **fields)
            if type(value) is not kind:
                raise TypeError("%s of the program's object is not a %s" % (what, kind.__name__))
            return value

        def __iter__(self):
            return iter(self._typed("list", list, "iterating"))

        def __len__(self):
            return self._typed("len", int, "len()")

        def __bool__(self):
            return self._typed("bool", bool, "bool()")

        def __str__(self):
            return self._typed("str", str, "str()")

        def __repr__(self):
            value = rpc("repr", self._target)
            return value if type(value) is str else "<%s>" % self._type

        def __getitem__(self, key):
            return rpc("getitem", self._target, key=codec.encode(key))

        def __contains__(self, key):
            return self._typed("contains", bool, "membership", key=codec.encode(key))

        # Compared by identity only: equality of program objects is decided by their values.
        def __eq__(self, other):
            return self is other

        def __ne__(self, other):
            return self is not other

        __hash__ = object.__hash__

    def describe(exc):
        if isinstance(exc, Timeout):
            return "Timeout: exceeded %g s" % limit
        if isinstance(exc, (ProgramError, Gone)):
            return " ".join(str(exc).split())[:300]
        name = type(exc).__name__
        try:
            text = str(exc)
        except BaseException:
            text = ""
        return " ".join((name + ": " + text if text else name).split())[:300]

    def run(source, label, namespace):
        """None when `source` ran; else a one-line reason."""
        try:
            state["deadline"] = monotonic() + limit
            setitimer(real, limit + 2 * grace)
            try:
                exec(compile(source, label, "exec"), namespace)
                return None
            except BaseException as exc:
                return describe(exc)
            finally:
                setitimer(real, 0)
        except BaseException as exc:
            return "Timeout: exceeded %g s" % limit if isinstance(exc, Timeout) else "error"

    asserts = job["asserts"]
    try:
        first = receive(monotonic() + limit + startup,
                        "Timeout: the program did not load within %g s" % limit)
        error = first.get("load")
        names = first.get("names")
        if error is None and type(names) is not list:
            error = "NoResult: the program sent a malformed first answer"
    except Gone as exc:
        error, names = str(exc), []
    if error is not None:
        report("LOAD " + " ".join(str(error).split())[:300])
    else:
        namespace = {"__name__": "__check__", "__builtins__": builtins}
        entry = job.get("entry_point")
        for item in names:
            if type(item) is not list or len(item) != 2 or type(item[0]) is not str:
                continue
            name, module = item
            if not name.isidentifier() or (hasattr(builtins, name) and name != entry):
                # A builtin stays the builtin: a program that redefines `sorted` or `abs`
                # must not compute the expected side of an assert.
                continue
            if type(module) is str:
                # A standard-library module the program imported is imported here, not used
                # there (the program could have patched its copy).
                stdlib = getattr(sys, "stdlib_module_names", ())
                if module.split(".")[0] in stdlib:
                    try:
                        import importlib

                        namespace[name] = importlib.import_module(module)
                    except BaseException:
                        pass
                continue
            namespace[name] = Remote({"global": name}, name)
        prelude_error = run("\n".join(job["prelude"]) + "\n", "<tests>", namespace)
        if prelude_error is not None:
            report("LOAD the tests' prelude failed: " + prelude_error)
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
    exit_now(0)


_checker()
