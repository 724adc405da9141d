# maspo code judge: the value codec shared by the checker (check.py, trusted) and the runner
# (run.py, untrusted). Prepended to either script; defines names only.
#
# Values cross the channel between the two processes as one JSON line each. Plain data is
# plain JSON (null, true/false, ints up to 2**62, floats incl. NaN/Infinity, strings); every
# other value is a one-key object naming its type: {"str": hex} (a string with surrogate code
# points, as UTF-32LE), {"list": [...]}, {"tuple": [...]},
# {"set": [...]}, {"frozenset": [...]}, {"dict": [[k, v], ...]}, {"bytes": hex},
# {"bytearray": hex}, {"int": hex} (big ints: hex conversion has no digit limit),
# {"complex": [re, im]}, {"range": [start, stop, step]}, {"fraction": [num, den]},
# {"decimal": text}, {"iter": [...]} (an iterator, materialized), {"ref": [id, type]} (an
# object that stays where it lives), {"global": name}, {"cb": id} (a checker-side function).
# The decoder builds exact builtin types only, so whatever the runner sends, the checker
# compares it with the builtins' own `==`: a program cannot hand the checker an object that
# equals everything.

_SMALL_INT = 1 << 62


class ValueTooLarge(Exception):
    pass


class _Codec(object):
    """`ref(x)` encodes an object that is not plain data (or raises TypeError); `unref(tag,
    body)` decodes a "ref"/"global"/"cb" object."""

    def __init__(self, ref, unref, max_items=1000000, max_depth=100):
        self.ref, self.unref = ref, unref
        self.max_items, self.max_depth = max_items, max_depth
        self.count = 0

    def encode(self, x):
        self.count = 0
        return self._enc(x, 0)

    def _enc(self, x, depth):
        self.count += 1
        if self.count > self.max_items or depth > self.max_depth:
            raise ValueTooLarge("the value is too large or too deeply nested to compare")
        if x is None or x is True or x is False:
            return x
        if isinstance(x, bool):
            return bool(x)
        if isinstance(x, int):
            x = int.__int__(x)  # the value it holds, not what a subclass's __int__ says
            return x if -_SMALL_INT < x < _SMALL_INT else {"int": hex(x)}
        if isinstance(x, float):
            return float.__float__(x)
        if isinstance(x, str):
            x = str.__str__(x)
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                # Surrogate code points: JSON text would join a high and a low one into a
                # different character; UTF-32 keeps each code point as it is.
                return {"str": x.encode("utf-32-le", "surrogatepass").hex()}
            return x
        if isinstance(x, (bytes, bytearray)):
            return {"bytearray" if isinstance(x, bytearray) else "bytes": bytes(x).hex()}
        e = self._enc
        if isinstance(x, tuple):
            return {"tuple": [e(v, depth + 1) for v in tuple.__iter__(x)]}
        if isinstance(x, list):
            return {"list": [e(v, depth + 1) for v in list.__iter__(x)]}
        if isinstance(x, dict):
            return {"dict": [[e(k, depth + 1), e(v, depth + 1)] for k, v in dict.items(x)]}
        if isinstance(x, frozenset):
            return {"frozenset": [e(v, depth + 1) for v in frozenset.__iter__(x)]}
        if isinstance(x, set):
            return {"set": [e(v, depth + 1) for v in set.__iter__(x)]}
        if isinstance(x, complex):
            return {"complex": [complex(x).real, complex(x).imag]}
        if isinstance(x, range):
            return {"range": [e(x.start, depth + 1), e(x.stop, depth + 1), e(x.step, depth + 1)]}
        kind = (type(x).__module__, type(x).__name__)
        if kind == ("fractions", "Fraction"):
            return {"fraction": [e(x.numerator, depth + 1), e(x.denominator, depth + 1)]}
        if kind == ("decimal", "Decimal"):
            return {"decimal": str(x)}
        if hasattr(type(x), "__next__") and hasattr(type(x), "__iter__"):
            items = []
            for v in x:
                items.append(e(v, depth + 1))
            return {"iter": items}
        return self.ref(x)

    def decode(self, v):
        return self._dec(v, 0)

    def _dec(self, v, depth):
        if depth > self.max_depth:
            raise ValueError("too deeply nested")
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is not dict or len(v) != 1:
            raise ValueError("malformed value")
        (tag, body), = v.items()
        d = self._dec
        if tag in ("list", "tuple", "set", "frozenset", "iter"):
            if type(body) is not list:
                raise ValueError("malformed %s" % tag)
            items = [d(x, depth + 1) for x in body]
            if tag == "list":
                return items
            if tag == "iter":
                return iter(items)
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict":
            out = {}
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError("malformed dict")
                out[d(pair[0], depth + 1)] = d(pair[1], depth + 1)
            return out
        if tag == "int":
            return int(body, 16)
        if tag == "str":
            return bytes.fromhex(body).decode("utf-32-le", "surrogatepass")
        if tag in ("bytes", "bytearray"):
            raw = bytes.fromhex(body)
            return raw if tag == "bytes" else bytearray(raw)
        if tag == "complex":
            return complex(float(body[0]), float(body[1]))
        if tag == "range":
            return range(*[int(d(x, depth + 1)) for x in body])
        if tag == "fraction":
            import fractions

            return fractions.Fraction(int(d(body[0], depth + 1)), int(d(body[1], depth + 1)))
        if tag == "decimal":
            import decimal

            return decimal.Decimal(str(body))
        if tag in ("ref", "global", "cb"):
            return self.unref(tag, body)
        raise ValueError("unknown value type %r" % (tag,))
