# maspo code judge: the runner (UNTRUSTED side; embedded in the binary after codec.py and run
# with `python -c` in its own sandbox). It reads {"program", "assert_timeout"} from stdin,
# loads the candidate program and then answers the checker's requests on its channel (the two
# descriptors named in $MASPO_CHANNEL, requests in and answers out, one JSON line each): call a function of the program, read an
# attribute, materialize, len, bool, str, item, membership. It never sees an assert, an
# expected value or the checker's report: a program that takes this process over (walks the
# frames, patches the codec, writes to the channel itself) can only answer requests with values, and
# the checker compares those values with its own.
#
#   first line:  {"load": null | "<error>", "names": [[global name, module name or null]]}
#   request:     {"id": n, "op": ..., "target": ref, "limit": seconds, ...}
#   answer:      {"id": n, "ok": value} | {"id": n, "err": [type name, message]}
#   callback:    {"callback": id, "args": [...], "kwargs": {...}} (calling a function the
#                checker passed), answered by {"cb_ok": value} | {"cb_err": [type, message]}


def _runner():
    import builtins
    import json
    import os
    import signal
    import sys
    import time

    job = json.loads(sys.stdin.buffer.read())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    requests, answers = [int(fd) for fd in os.environ.pop("MASPO_CHANNEL").split()]
    for fd in (requests, answers):
        os.set_inheritable(fd, False)
    requests = os.fdopen(requests, "rb")
    write, exit_now, monotonic = os.write, os._exit, time.monotonic
    limit = float(job["assert_timeout"])
    setitimer, real = signal.setitimer, signal.ITIMER_REAL
    max_line = 64 << 20

    class Timeout(BaseException):
        pass

    def on_alarm(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)

    objects, index = [], {}

    def ref(x):
        n = index.get(id(x))
        if n is None:
            n = len(objects)
            objects.append(x)
            index[id(x)] = n
        return {"ref": [n, type(x).__name__[:80]]}

    namespace = {"__name__": "__candidate__", "__builtins__": builtins}

    def unref(tag, body):
        if tag == "ref":
            return objects[int(body)]
        if tag == "global":
            return namespace[str(body)]
        return callback_stub(int(body))

    codec = _Codec(ref, unref)

    def send(message):
        data = (json.dumps(message) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[write(answers, view):]

    def receive():
        line = requests.readline(max_line)
        if not line.endswith(b"\n"):
            exit_now(0)
        return json.loads(line)

    def error_of(exc):
        if isinstance(exc, Timeout):
            return ["Timeout", "exceeded %g s" % limit]
        try:
            text = str(exc)
        except BaseException:
            text = ""
        return [type(exc).__name__[:80], " ".join(text.split())[:300]]

    def callback_stub(n):
        def call_checker(*args, **kwargs):
            send({"callback": n, "args": codec.encode(list(args)),
                  "kwargs": codec.encode(dict(kwargs))})
            while True:
                message = receive()
                if "cb_ok" in message:
                    return codec.decode(message["cb_ok"])
                if "cb_err" in message:
                    name, text = (list(message["cb_err"]) + ["", ""])[:2]
                    raise RuntimeError("%s: %s" % (name, text))
                # The callback itself calls into the program: answer that first.
                serve(message)

        return call_checker

    def perform(request):
        op = request["op"]
        target = codec.decode(request["target"])
        if op == "call":
            args = codec.decode(request["args"])
            kwargs = codec.decode(request["kwargs"])
            return target(*args, **kwargs)
        if op == "getattr":
            return getattr(target, str(request["name"]))
        if op == "list":
            return list(target)
        if op == "len":
            return len(target)
        if op == "bool":
            return bool(target)
        if op == "str":
            return str(target)
        if op == "repr":
            return repr(target)
        if op == "getitem":
            return target[codec.decode(request["key"])]
        if op == "contains":
            return codec.decode(request["key"]) in target
        raise ValueError("unknown request %r" % (op,))

    def serve(request):
        try:
            seconds = float(request.get("limit", limit))
        except BaseException:
            seconds = limit
        error, value = timed(lambda: codec.encode(perform(request)), seconds)
        send({"id": request.get("id"), "err": error} if error else
             {"id": request.get("id"), "ok": value})

    def timed(fn, seconds):
        """(error, value) of fn() under an alarm; a timer already running (a request served
        inside a callback) is restored afterwards with what was left of it."""
        try:
            previous = setitimer(real, max(0.001, seconds))[0]
            started = monotonic()
            try:
                return None, fn()
            except BaseException as exc:
                return error_of(exc), None
            finally:
                setitimer(real, 0)
                if previous:
                    setitimer(real, max(0.001, previous - (monotonic() - started)))
        except BaseException as exc:
            return error_of(exc), None

    program = job["program"]
    error, _ = timed(lambda: exec(compile(program, "<candidate>", "exec"), namespace), limit)
    names = []
    for k, v in list(namespace.items()):
        if isinstance(k, str) and not k.startswith("__"):
            module = type(v).__name__ == "module" and getattr(v, "__name__", None)
            names.append([k, module if isinstance(module, str) else None])
    send({"load": None if error is None else "%s: %s" % tuple(error), "names": names})
    while True:
        serve(receive())


try:
    _runner()
finally:
    import os as _os

    _os._exit(0)
