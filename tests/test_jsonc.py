"""jsonc: json.loads() and json.dumps() of labels without importing json."""

import json
import math
import subprocess

from hypothesis import given, settings, strategies as st

from support import LIB, SYSTEM_PYTHON
from ganeti_cmk.jsonc import dumps_strings, loads

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30)


def same(a, b):
    """Equal, NaN included."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@settings(max_examples=300)
@given(values, st.sampled_from(["", " ", "\n", " \t\r\n "]), st.booleans())
def test_returns_what_json_loads_returns(value, space, ascii_only):
    text = space + json.dumps(value, ensure_ascii=ascii_only) + space
    assert loads(text) == json.loads(text)


@settings(max_examples=500)
@given(st.text(alphabet='{}[]",:0123456789.eE+-truefalsnIiyNa \t\n\\u') | st.text())
def test_any_text_gives_what_json_loads_gives_or_its_error(text):
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError) as e:
        try:
            loads(text)
        except type(e) as got:
            assert str(got) == str(e)
        else:
            raise AssertionError("no error for %r" % text)
    else:
        assert same(loads(text), expected)


def test_constants_and_nesting_as_json_has_them():
    assert loads("[NaN, Infinity, -Infinity]")[1:] == [float("inf"), float("-inf")]
    assert math.isnan(loads("NaN"))
    assert loads('{"a": 1, "a": 2}') == {"a": 2}
    deep = "[" * 100000 + "]" * 100000
    try:
        json.loads(deep)
    except RecursionError:
        try:
            loads(deep)
        except RecursionError:
            pass
        else:
            raise AssertionError("no RecursionError")


def refuse(word):
    raise ValueError("no %s here" % word)


@settings(max_examples=200)
@given(values, st.sampled_from(["NaN", "Infinity", "-Infinity", "1"]))
def test_parse_constant_as_json_loads_takes_it(value, constant):
    text = "[%s, %s]" % (json.dumps(value), constant)
    try:
        expected = json.loads(text, parse_constant=refuse)
    except ValueError as e:
        try:
            loads(text, parse_constant=refuse)
        except ValueError as got:
            assert str(got) == str(e)
        else:
            raise AssertionError("no error for %r" % text)
    else:
        assert loads(text, parse_constant=refuse) == expected
        assert loads(text) == json.loads(text)


def test_a_successful_parse_imports_neither_json_nor_re():
    """What it is for: as the checks run (the system python3, -I -S)."""
    code = ("import sys; sys.path.append(%r); from ganeti_cmk.jsonc import loads; "
            "v = loads(sys.argv[1]); print(v == {'a': [1, 2.5, 'x', None, True]}, "
            "sorted(m for m in ('json', 're', 'enum') if m in sys.modules))" % LIB)
    out = subprocess.run([SYSTEM_PYTHON, "-I", "-S", "-c", code,
                          '{"a": [1, 2.5, "x", null, true]}'], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True, timeout=60).stdout
    assert out.split("\n")[0] == "True []"


@settings(max_examples=300)
@given(st.dictionaries(st.text(), st.text()))
def test_dumps_strings_writes_what_json_dumps_writes(mapping):
    assert dumps_strings(mapping) == json.dumps(mapping, sort_keys=True)
    assert json.loads(dumps_strings(mapping)) == mapping
