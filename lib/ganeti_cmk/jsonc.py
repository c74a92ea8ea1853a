"""JSON through json's own C parts (`_json`), without importing json.

The agent starts every check every minute, and `import json` costs more
than half of `python3 -c pass` there: json.decoder imports re, and with it
enum, functools and collections, and compiles regular expressions that
CPython never uses (its C scanner and string encoder do the work).

loads() calls that scanner exactly as json.loads() does (the same
settings, whitespace and trailing data rules), so it returns what
json.loads() returns; on any failure, and where `_json` is missing, it
leaves the answer to json.loads() itself, so bad input raises json's own
errors with its messages.  dumps_strings() writes a {str: str} dict as
json.dumps(mapping, sort_keys=True) does, with json's C string encoder.
"""

_WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"),
              "NaN": float("nan")}


class _Settings:
    """What json.JSONDecoder(parse_constant=...) passes the scanner."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    def __init__(self, parse_constant):
        self.parse_constant = parse_constant


_scanners = {}  # parse_constant -> the scanner made with it


def loads(text, parse_constant=None):
    """json.loads(text, parse_constant=parse_constant) for a str."""
    try:
        scan = _scanners.get(parse_constant)
        if scan is None:
            from _json import make_scanner
            scan = _scanners[parse_constant] = make_scanner(
                _Settings(parse_constant or _CONSTANTS.__getitem__))
        start = len(text) - len(text.lstrip(_WHITESPACE))
        value, end = scan(text, start)
        if not text[end:].strip(_WHITESPACE):
            return value
    except Exception:  # noqa: BLE001 - json.loads() says what is wrong
        pass
    import json
    return json.loads(text, parse_constant=parse_constant)


def dumps_strings(mapping):
    """json.dumps(mapping, sort_keys=True) for a dict of str to str."""
    try:
        from _json import encode_basestring_ascii as quote
    except ImportError:  # pragma: no cover - other Python implementations
        import json
        return json.dumps(mapping, sort_keys=True)
    return "{%s}" % ", ".join("%s: %s" % (quote(key), quote(value))
                              for key, value in sorted(mapping.items()))
