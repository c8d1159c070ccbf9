"""Masking of personal data in everything the public sees (R19, 数据脱敏).

Three kinds of personal data leave the platform only masked: resident ID numbers
(居民身份证号), phone numbers and the names of people (witnesses, samplers, approvers).
`mask_text` finds ID and phone numbers anywhere in free text; `mask_value` masks a
value by what its field name says it is, then masks free text inside it as well.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: An 18-character resident ID (17 digits + digit/X) or an old 15-digit one, standing alone.
ID_NUMBER_RE = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")
#: A mainland mobile number, optionally +86 and with space/dash grouping (138 1234 5678).
MOBILE_RE = re.compile(
    r"(?<![0-9A-Za-z])(?:\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?![0-9A-Za-z])"
)
#: A landline with its area code: 0755-12345678, (010)87654321, 021 5555 6666.
LANDLINE_RE = re.compile(
    r"(?<![0-9A-Za-z])\(?(0\d{2,3})\)?[- ]?(\d{3,4})[- ]?(\d{4})(?![0-9A-Za-z])"
)

#: Field names whose values are personal names (masked as 张*).
NAME_KEYS = frozenset(
    {
        "witness",
        "witness_name",
        "sampler",
        "sampler_name",
        "approver",
        "approver_name",
        "reviewer",
        "tester",
        "inspector",
        "receiver",
        "received_by",
        "sealed_by",
        "checked_by",
        "person",
        "contact",
        "contact_name",
        "operator",
        "signer",
    }
)
#: Substrings of field names whose values are ID numbers / phone numbers.
ID_KEY_PARTS = ("id_number", "id_no", "idcard", "id_card", "identity", "身份证")
PHONE_KEY_PARTS = ("phone", "mobile", "tel", "电话", "手机")


def mask_id_number(value: str) -> str:
    """110101199003071234 -> 110***********1234 (first 3 and last 4 kept)."""
    value = value.strip()
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_phone(value: str) -> str:
    """13812345678 -> 138****5678; landlines keep their area code and last 4 digits."""
    digits = re.sub(r"\D", "", value)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if len(digits) == 11 and digits.startswith("1"):
        return digits[:3] + "****" + digits[-4:]
    if len(digits) >= 8:
        return digits[:-8] + "****" + digits[-4:]
    return "*" * len(digits)


def mask_name(value: str) -> str:
    """张三 -> 张*, 欧阳娜娜 -> 欧***: the first character, then one star per character."""
    value = value.strip()
    if not value:
        return value
    return value[0] + "*" * max(1, len(value) - 1)


def mask_text(text: str) -> str:
    """Mask every ID number and phone number that appears in free text."""
    text = ID_NUMBER_RE.sub(lambda m: mask_id_number(m.group(1)), text)
    text = MOBILE_RE.sub(lambda m: m.group(1) + "****" + m.group(3), text)
    text = LANDLINE_RE.sub(lambda m: m.group(1) + "-****" + m.group(3), text)
    return text


def _kind(key: str) -> str | None:
    low = key.lower()
    if low in NAME_KEYS or low.endswith("_name") and low.split("_")[0] in NAME_KEYS:
        return "name"
    if any(part in low for part in ID_KEY_PARTS):
        return "id"
    if any(part in low for part in PHONE_KEY_PARTS):
        return "phone"
    return None


def mask_value(key: str, value: Any) -> Any:
    """Mask `value` as the field `key` demands; nested objects and lists recursively."""
    if isinstance(value, Mapping):
        if _kind(key) == "name":
            # e.g. {"witness": {"name": ..., "id_number": ...}}: everything inside is personal
            return {
                str(k): (mask_name(v) if str(k).lower() == "name" and isinstance(v, str)
                         else mask_value(str(k), v))
                for k, v in value.items()
            }
        return {str(k): mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(key, v) for v in value]
    if not isinstance(value, str):
        return value
    kind = _kind(key)
    if kind == "name":
        return mask_name(value)
    if kind == "id":
        return mask_id_number(value)
    if kind == "phone":
        return mask_phone(value)
    return mask_text(value)
