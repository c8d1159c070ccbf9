"""Report codes (检测报告标识码), INTERFACE.md §4; layout documented in docs/report-codes.md.

Canonical form, 19 characters of `0-9A-Z`:

    RRRRRR YY XXXXXXXXXX C
    region year  random  check

- `RRRRRR`: the institution's 6-digit administrative region code (GB/T 2260);
- `YY`: the last two digits of the issuance year (China Standard Time);
- `XXXXXXXXXX`: 10 base-36 digits of a uniform random number below 36**10
  (51.7 bits from `secrets`), so valid codes cannot be guessed;
- `C`: ISO/IEC 7064 MOD 37,36 check character over the first 18 characters.

Printed for reading aloud as `RRRRRR-YY-XXXXX-XXXXX-C`. Parsing accepts any case and
any `-` or whitespace between characters.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.iso7064 import mod_37_36

from service.errors import NotFound
from verifier.chain import report_subject

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
REGION_CHARS = 6
YEAR_CHARS = 2
RANDOM_CHARS = 10
RANDOM_SPACE = 36**RANDOM_CHARS  # 3.66e15, log2 = 51.7 bits
CODE_CHARS = REGION_CHARS + YEAR_CHARS + RANDOM_CHARS + 1  # 19
#: Longest input `parse_code` looks at (separators included); longer input is refused.
MAX_INPUT_CHARS = 64

_SEPARATORS = re.compile(r"[\s\-]+")
_CANONICAL = re.compile(rf"^[0-9]{{{REGION_CHARS + YEAR_CHARS}}}[0-9A-Z]{{{RANDOM_CHARS + 1}}}$")


class InvalidCode(ValueError):
    """Not a report code: wrong length, characters, or check character."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ReportCode:
    region: str
    year2: str
    random: str
    check: str

    @property
    def canonical(self) -> str:
        return self.region + self.year2 + self.random + self.check

    @property
    def printed(self) -> str:
        r = self.random
        return f"{self.region}-{self.year2}-{r[:5]}-{r[5:]}-{self.check}"


def _base36(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def check_character(body: str) -> str:
    """The ISO/IEC 7064 MOD 37,36 check character for `body` (0-9A-Z)."""
    return str(mod_37_36.calc_check_digit(body))


def generate_code(region: str, year: int) -> ReportCode:
    """A new random code for an institution in `region`, issued in `year`."""
    if not re.fullmatch(r"[0-9]{6}", region):
        raise ValueError("region must be 6 digits")
    year2 = f"{year % 100:02d}"
    rnd = _base36(secrets.randbelow(RANDOM_SPACE), RANDOM_CHARS)
    body = region + year2 + rnd
    return ReportCode(region, year2, rnd, check_character(body))


def normalize(text: str) -> str:
    """Upper case, separators removed (no validation)."""
    return _SEPARATORS.sub("", text).upper()


def parse_code(text: str) -> ReportCode:
    """Parse any accepted form; raises InvalidCode (a mistyped character fails the check)."""
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS:
        raise InvalidCode("too long")
    code = normalize(text)
    if len(code) != CODE_CHARS:
        raise InvalidCode(f"a report code has {CODE_CHARS} characters, not {len(code)}")
    if not _CANONICAL.match(code):
        raise InvalidCode("a report code is 8 digits followed by 11 characters of 0-9A-Z")
    try:
        mod_37_36.validate(code)
    except StdnumValidationError:
        raise InvalidCode("the check character does not match (mistyped code?)") from None
    return ReportCode(
        code[:REGION_CHARS],
        code[REGION_CHARS : REGION_CHARS + YEAR_CHARS],
        code[REGION_CHARS + YEAR_CHARS : CODE_CHARS - 1],
        code[-1],
    )


def canonical_code(text: str) -> str:
    """Canonical form of a code given in any accepted form, or 404 `unknown_code`.

    An unparseable code cannot have been issued, so the API answers it like any code
    it does not know, with the reason in the detail.
    """
    try:
        return parse_code(text).canonical
    except InvalidCode as exc:
        raise NotFound("unknown_code", f"not a report code: {exc.reason}") from None


def canonical_or_none(text: str) -> str | None:
    """Canonical form of a code given in any accepted form, or None if it cannot be one."""
    try:
        return parse_code(text).canonical
    except InvalidCode:
        return None


def revocation_subject(code: str) -> bytes:
    """SHA-256("jianzheng/report-code/" || CODE), CODE canonical (INTERFACE §2), for a
    well-formed code (check character included; raises InvalidCode otherwise)."""
    return report_subject(parse_code(code).canonical)
