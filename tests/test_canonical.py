"""RFC 8785 canonicalization and the strict JSON parser."""

from __future__ import annotations

import json
import math
import random
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.canonical import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    canonicalize,
    loads_strict,
    serialize_number,
)
from verifier.errors import CanonicalizationError, VerifierError
from verifier.merkle import leaf_hash, record_leaf_hash

VECTORS = json.loads((Path(__file__).parent / "vectors" / "jcs.json").read_text("utf-8"))


# --- checked-in vectors ---------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vectors(case: dict[str, str]) -> None:
    value = loads_strict(case["json"].encode("utf-8"))
    canonical = canonicalize(value)
    assert canonical.hex() == case["canonical_hex"]
    assert canonical == case["canonical"].encode("utf-8")
    assert leaf_hash(canonical).hex() == case["leaf_hash"]
    if isinstance(value, dict):
        assert record_leaf_hash(value).hex() == case["leaf_hash"]


def test_vectors_cover_required_cases() -> None:
    names = {c["name"] for c in VECTORS["cases"]}
    assert {"report_chinese", "nested_objects", "numbers", "escapes"} <= names
    numbers = next(c for c in VECTORS["cases"] if c["name"] == "numbers")["canonical"]
    for literal in ("1e+21", "1e-7", "0.1", ",0,"):
        assert literal in numbers


# --- RFC 8785 examples (independent of the vectors file) -----------------------------------

# RFC 8785 Appendix B: IEEE-754 bit patterns and their required serialization.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC8785_NUMBERS)
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert serialize_number(value) == expected
    assert canonicalize([value]) == f"[{expected}]".encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_rfc8785_appendix_b_errors(bits: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    with pytest.raises(CanonicalizationError) as info:
        canonicalize({"x": value})
    assert info.value.code == "non_finite_number"


def test_rfc8785_section_3_2_2_example() -> None:
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(loads_strict(text.encode())) == expected.encode("utf-8")


def test_rfc8785_sorting_by_utf16_code_units() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = [k for k in json.loads(canonicalize(value))]
    # U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16, after it by code point.
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (5.0, "5"),
        (-1.5e-10, "-1.5e-10"),
        (123.456, "123.456"),
        (2.5e300, "2.5e+300"),
    ],
)
def test_number_forms(value: float, expected: str) -> None:
    assert serialize_number(value) == expected


def test_integers() -> None:
    assert canonicalize([0, -0, 1, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (
        b"[0,0,1,-1,9007199254740992,-9007199254740992]"
    )
    for bad in (MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 10**30):
        with pytest.raises(CanonicalizationError) as info:
            canonicalize({"n": bad})
        assert info.value.code == "integer_out_of_range"


def test_literals_and_empty_containers() -> None:
    assert canonicalize({"t": True, "f": False, "n": None, "a": [], "o": {}}) == (
        b'{"a":[],"f":false,"n":null,"o":{},"t":true}'
    )


# --- strings ------------------------------------------------------------------------------------


def test_control_characters_escaped_exactly() -> None:
    short = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
    for code in range(0x20):
        expected = short.get(code, f"\\u{code:04x}")
        assert canonicalize(chr(code)) == f'"{expected}"'.encode()


def test_only_quote_backslash_and_controls_escaped() -> None:
    assert canonicalize('"\\') == b'"\\"\\\\"'
    # '/', DEL, C1 controls, line separators and non-ASCII are written as UTF-8, unescaped.
    text = "/\x7f\x80\u2028\u2029é中文😀"
    assert canonicalize(text) == ('"' + text + '"').encode("utf-8")


def test_lone_surrogates_rejected() -> None:
    for value in ("\ud800", {"\udc00": 1}, ["ok", "x\udfffy"]):
        with pytest.raises(CanonicalizationError) as info:
            canonicalize(value)
        assert info.value.code == "invalid_string"


# --- rejected values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {1: "int key"},
        {True: "bool key"},
        {None: "null key"},
        {("a",): "tuple key"},
        {"b": b"bytes"},
        {"s": {1, 2}},
        {"d": Decimal("1.5")},
        {"o": object()},
        {"nan": math.nan},
        {"inf": math.inf},
        {"-inf": -math.inf},
    ],
)
def test_non_json_values_rejected(value: Any) -> None:
    with pytest.raises(CanonicalizationError) as info:
        canonicalize(value)
    assert isinstance(info.value, VerifierError)
    assert info.value.code
    assert info.value.message


def test_depth_limit() -> None:
    ok: Any = "x"
    for _ in range(MAX_DEPTH):
        ok = [ok]
    canonicalize(ok)
    with pytest.raises(CanonicalizationError) as info:
        canonicalize([ok])
    assert info.value.code == "too_deep"


# --- loads_strict -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (b'{"a":1,"a":2}', "duplicate_key"),
        (b'{"x":{"a":1,"b":{},"a":1}}', "duplicate_key"),
        (b'{"a":NaN}', "non_finite_number"),
        (b'{"a":Infinity}', "non_finite_number"),
        (b'{"a":-Infinity}', "non_finite_number"),
        (b'{"a":1e400}', "non_finite_number"),
        (b'{"a":9007199254740993}', "integer_out_of_range"),
        (b'{"a":-123456789012345678901234567890}', "integer_out_of_range"),
        (b"{} x", "invalid_json"),
        (b"{}{}", "invalid_json"),
        (b'{"a":1}\x00', "invalid_json"),
        (b"\xef\xbb\xbf{}", "invalid_json"),
        (b'{"a":"\xff"}', "invalid_json"),
        (b'{"a":"\\ud800"}', "invalid_string"),
        (b'{"\\udc00":1}', "invalid_string"),
        (b"", "invalid_json"),
        (b"{'a':1}", "invalid_json"),
        (b'{"a":[1,]}', "invalid_json"),
    ],
)
def test_loads_strict_rejects(text: bytes, code: str) -> None:
    with pytest.raises(CanonicalizationError) as info:
        loads_strict(text)
    assert info.value.code == code


def test_loads_strict_large_integers_are_doubles() -> None:
    # The canonical form prints such doubles as integers: they must parse back.
    for value in (1e16, 1e20, 2.0**60, 9007199254740994.0, -1e300):
        parsed = loads_strict(canonicalize([value]))[0]
        assert isinstance(parsed, float) and parsed == value
    assert loads_strict(b"[39914286431752220]") == [3.991428643175222e16]
    for text in (b"[9007199254740993]", b"[39914286431752221]", b"[100000000000000000001]"):
        with pytest.raises(CanonicalizationError):
            loads_strict(text)
    assert loads_strict(b"[9007199254740992]") == [2**53]
    assert isinstance(loads_strict(b"[9007199254740992]")[0], int)


def test_loads_strict_limits() -> None:
    assert loads_strict(b'{"a": [1, 2.5, "\\u4e2d"]}\n') == {"a": [1, 2.5, "中"]}
    with pytest.raises(CanonicalizationError) as info:
        loads_strict(b"[" + b"0," * 100 + b"0]", max_bytes=100)
    assert info.value.code == "json_too_large"
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    with pytest.raises(CanonicalizationError) as info:
        loads_strict(deep)
    assert info.value.code == "too_deep"
    very_deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(CanonicalizationError) as info:
        loads_strict(very_deep)
    assert info.value.code == "too_deep"
    assert loads_strict(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None


# --- properties -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_canonical_form_round_trips(value: Any) -> None:
    canonical = canonicalize(value)
    parsed = loads_strict(canonical)
    assert parsed == value  # floats print back to the same double; -0.0 == 0
    assert canonicalize(parsed) == canonical


@given(st.dictionaries(st.text(max_size=6), json_scalars, min_size=2, max_size=12), st.randoms())
@settings(max_examples=200, deadline=None)
def test_member_order_does_not_matter(value: dict[str, Any], rnd: random.Random) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    assert canonicalize(dict(items)) == canonicalize(value)
    keys = list(json.loads(canonicalize(value)))
    assert keys == sorted(keys, key=lambda k: k.encode("utf-16-be"))


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=500, deadline=None)
def test_number_serialization_round_trips_and_is_shortest(value: float) -> None:
    text = serialize_number(value)
    assert float(text) == value
    assert " " not in text and "+" not in text.split("e")[0]
    assert text == "0" or not text.lstrip("-").startswith("00")
    # No shorter decimal (one digit fewer) parses back to the same double.
    digits = text.lstrip("-").split("e")[0].replace(".", "").strip("0")
    if len(digits) > 1:
        assert len(digits) <= 17
