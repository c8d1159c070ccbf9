"""RFC 8785 JSON Canonicalization Scheme (JCS), and a strict JSON parser.

``canonicalize`` turns a JSON value (dict/list/str/int/float/bool/None) into its canonical
UTF-8 bytes: object members sorted by the UTF-16 code units of their names, numbers in
ECMAScript ``Number.prototype.toString`` form, strings escaped exactly as JCS prescribes, no
whitespace. ``loads_strict`` parses JSON text the way the verifier needs it: UTF-8 only, no
duplicate member names, no NaN/Infinity, no trailing data, bounded size and depth.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

from verifier.errors import CanonicalizationError

#: Largest magnitude of an integer that IEEE-754 double precision holds exactly (2**53).
MAX_SAFE_INTEGER = 2**53
#: Deepest nesting of arrays/objects accepted by ``canonicalize`` and ``loads_strict``.
MAX_DEPTH = 64
#: Longest integer literal considered (a double's largest finite value has 309 digits).
MAX_INTEGER_DIGITS = 309
#: Largest JSON text ``loads_strict`` accepts, in bytes.
MAX_JSON_BYTES = 64 * 1024 * 1024

_SHORT_ESCAPES = {
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x5C: "\\\\",
}
_ESCAPES: dict[int, str] = {c: f"\\u{c:04x}" for c in range(0x20)}
_ESCAPES.update(_SHORT_ESCAPES)


def canonicalize(obj: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of the JSON value ``obj``.

    Raises CanonicalizationError for values JSON cannot carry faithfully: non-string keys,
    NaN/Infinity, integers beyond +-2**53, lone surrogates, other Python types, or nesting
    deeper than MAX_DEPTH.
    """
    parts: list[str] = []
    _serialize(obj, parts, 0)
    text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError(
            "string contains a lone surrogate (not valid Unicode)", code="invalid_string"
        ) from exc


def _serialize(obj: Any, out: list[str], depth: int) -> None:
    # bool before int: bool is a subclass of int in Python.
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(serialize_int(obj))
    elif isinstance(obj, float):
        out.append(serialize_number(obj))
    elif isinstance(obj, str):
        out.append(serialize_string(obj))
    elif isinstance(obj, Mapping):
        if depth >= MAX_DEPTH:
            raise CanonicalizationError(
                f"nesting deeper than {MAX_DEPTH} levels", code="too_deep"
            )
        items: list[tuple[bytes, str, Any]] = []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise CanonicalizationError(
                    f"object member name must be a string, not {type(key).__name__}",
                    code="non_string_key",
                )
            items.append((_utf16_sort_key(key), key, value))
        items.sort(key=lambda item: item[0])
        out.append("{")
        for i, (_, key, value) in enumerate(items):
            if i:
                out.append(",")
            out.append(serialize_string(key))
            out.append(":")
            _serialize(value, out, depth + 1)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise CanonicalizationError(
                f"nesting deeper than {MAX_DEPTH} levels", code="too_deep"
            )
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _serialize(value, out, depth + 1)
        out.append("]")
    else:
        raise CanonicalizationError(
            f"{type(obj).__name__} is not a JSON type", code="unsupported_type"
        )


def _utf16_sort_key(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly like the sequence of UTF-16 code units.
    try:
        return key.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError(
            "object member name contains a lone surrogate", code="invalid_string"
        ) from exc


def serialize_string(value: str) -> str:
    """JCS string form: only ``"``, ``\\`` and U+0000..U+001F are escaped."""
    return '"' + value.translate(_ESCAPES) + '"'


def serialize_int(value: int) -> str:
    """An integer as ECMAScript prints it, if IEEE-754 holds it exactly (|n| <= 2**53)."""
    if abs(value) > MAX_SAFE_INTEGER:
        raise CanonicalizationError(
            f"integer {value} is outside the exact range of IEEE-754 doubles (+-2**53)",
            code="integer_out_of_range",
        )
    return str(value)


def serialize_number(value: float) -> str:
    """ECMAScript ``Number.prototype.toString`` of a finite double (RFC 8785 §3.2.2.3)."""
    if math.isnan(value) or math.isinf(value):
        raise CanonicalizationError(f"{value!r} is not a JSON number", code="non_finite_number")
    if value == 0.0:
        return "0"  # also -0
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digit string that round-trips (as ECMAScript requires).
    digits, n = _shortest_digits(abs(value))
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        exponent = n - 1
        exp_text = ("+" if exponent >= 0 else "-") + str(abs(exponent))
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = mantissa + "e" + exp_text
    return sign + body


def _shortest_digits(value: float) -> tuple[str, int]:
    """Digits s (no leading/trailing zeros) and n with value == 0.s * 10**n."""
    text = repr(value)
    mantissa, _, exp_part = text.partition("e")
    exponent = int(exp_part) if exp_part else 0
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    point = len(int_part) + exponent  # position of the decimal point within all_digits
    stripped = all_digits.lstrip("0")
    point -= len(all_digits) - len(stripped)
    stripped = stripped.rstrip("0")
    return stripped, point


# --- strict parsing ------------------------------------------------------------------------


def loads_strict(data: bytes, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse UTF-8 JSON text strictly (I-JSON, RFC 7493).

    Rejects: more than ``max_bytes``, a byte-order mark, invalid UTF-8, duplicate member
    names, NaN/Infinity, numbers that overflow a double, integers a double cannot hold
    exactly, lone surrogates, nesting deeper than MAX_DEPTH, and anything after the value.
    Integers within +-2**53 become ``int``; larger ones that a double holds exactly (the
    canonical form of e.g. 1e20 is ``100000000000000000000``) become ``float``.
    """
    if len(data) > max_bytes:
        raise CanonicalizationError(
            f"JSON text is {len(data)} bytes, more than the limit of {max_bytes}",
            code="json_too_large",
        )
    if data.startswith(b"\xef\xbb\xbf"):
        raise CanonicalizationError("JSON text starts with a byte-order mark", code="invalid_json")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CanonicalizationError(
            f"JSON text is not valid UTF-8 (byte {exc.start})", code="invalid_json"
        ) from exc
    # The stdlib parser recurses per nesting level: bound the depth before it runs.
    if _max_nesting(data) > MAX_DEPTH:
        raise CanonicalizationError(f"nesting deeper than {MAX_DEPTH} levels", code="too_deep")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except CanonicalizationError:
        raise
    except RecursionError as exc:
        raise CanonicalizationError("JSON nesting is too deep", code="too_deep") from exc
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise CanonicalizationError(f"invalid JSON: {exc}", code="invalid_json") from exc
    _check_tree(value)
    return value


_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _max_nesting(data: bytes) -> int:
    """Deepest bracket nesting outside string literals (an upper bound for invalid JSON)."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return 0  # cannot nest deeper than the limit: skip the scan
    brackets = _STRING_RE.sub(b"", data).translate(_BRACKET_SIGNS, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(accumulate(array("b", brackets)))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise CanonicalizationError(
                f"duplicate object member name {key!r}", code="duplicate_key"
            )
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise CanonicalizationError(f"{name} is not a JSON number", code="non_finite_number")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise CanonicalizationError(
            f"number {text[:40]} overflows a double", code="non_finite_number"
        )
    return value


def _parse_int(text: str) -> int | float:
    """Integers beyond +-2**53 are numbers a double must carry. The canonical form prints
    large doubles as integers (1e20 as ``100000000000000000000``), so such a literal is
    accepted, as that double, exactly when it is the canonical form of its nearest double;
    any other (e.g. ``9007199254740993``) would silently change value and is rejected."""
    digits = text.lstrip("-")
    if len(digits) <= 15:
        return int(text)
    if len(digits) <= MAX_INTEGER_DIGITS:
        value = int(text)
        if abs(value) <= MAX_SAFE_INTEGER:
            return value
        as_float = float(value)
        if not math.isinf(as_float) and serialize_number(as_float) == text:
            return as_float
    raise CanonicalizationError(
        f"integer {text[:40]} is not exactly representable as an IEEE-754 double",
        code="integer_out_of_range",
    )


def _check_tree(value: Any) -> None:
    """Iteratively check depth and that every string is valid Unicode."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_unicode(node)
        elif isinstance(node, dict):
            if depth >= MAX_DEPTH:
                raise CanonicalizationError(
                    f"nesting deeper than {MAX_DEPTH} levels", code="too_deep"
                )
            for key, child in node.items():
                _check_unicode(key)
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            if depth >= MAX_DEPTH:
                raise CanonicalizationError(
                    f"nesting deeper than {MAX_DEPTH} levels", code="too_deep"
                )
            stack.extend((child, depth + 1) for child in node)


def _check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError(
            "string contains a lone surrogate (not valid Unicode)", code="invalid_string"
        ) from exc


__all__ = [
    "MAX_DEPTH",
    "MAX_JSON_BYTES",
    "MAX_SAFE_INTEGER",
    "canonicalize",
    "loads_strict",
    "serialize_number",
    "serialize_string",
]

