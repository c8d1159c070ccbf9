"""The signed QR payload (INTERFACE §7.5) against the platform's own records.

`check_payload` is what the online page `/v/{code}/{payload}` shows: whether the payload's
signature verifies with a key of the platform's trust list (the checks of
`verifier.qr.verify_signed_qr`), and, fact by fact, whether what it signs matches the
platform's record of the report: code, report number and institution (the code row),
conclusion and issued-on date (the latest metadata record), the original PDF's SHA-256
and the sealing time (the sealed-PDF record, whose body names the payload's key id and
sealing time under `qr`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from service.domain.codes import canonical_or_none
from service.storage.models import Record, ReportCode
from signer.qrkeys import QrKeyStore
from verifier.errors import InvalidQr, InvalidTrustList
from verifier.models import Check
from verifier.qr import QrFacts, decode_payload, parse_trust_list, verify_signed_qr

#: The facts a payload signs, in the order the page lists them.
FACT_NAMES = (
    "code", "report_no", "institution", "conclusion", "issued_on", "original_sha256",
    "sealed_at",
)


@dataclass(frozen=True)
class PayloadCheck:
    """What the page says about a QR payload."""

    #: False when the text is not a payload at all (`problem` says why).
    parsed: bool
    signature_ok: bool = False
    checks: tuple[Check, ...] = ()
    facts: QrFacts | None = None
    kid: str | None = None
    #: Per fact: True matches the platform's record, False differs, None not on record.
    matches: dict[str, bool | None] = field(default_factory=dict)
    platform: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def facts_match(self) -> bool:
        return bool(self.matches) and all(v is True for v in self.matches.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "parsed": self.parsed,
            "signature_ok": self.signature_ok,
            "facts_match": self.facts_match,
            "kid": self.kid,
            "facts": self.facts.as_json() if self.facts else None,
            "matches": self.matches,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "problem": self.problem,
        }


def platform_facts(session: Session, code: str) -> dict[str, Any]:
    """The platform's record of the facts a payload signs (empty for an unknown code)."""
    row = session.get(ReportCode, code)
    if row is None:
        return {}
    out: dict[str, Any] = {
        "code": row.code, "report_no": row.report_no, "institution": row.institution,
    }
    meta = session.get(Record, row.report_record_id) if row.report_record_id else None
    if meta is not None:
        body = json.loads(meta.canonical).get("body") or {}
        out["conclusion"] = body.get("conclusion")
        out["issued_on"] = body.get("issued_on")
    sealed = session.get(Record, row.pdf_record_id) if row.pdf_record_id else None
    if sealed is not None:
        body = json.loads(sealed.canonical).get("body") or {}
        out["original_sha256"] = body.get("original_sha256")
        qr = body.get("qr") or {}
        out["sealed_at"] = qr.get("sealed_at")
        out["kid"] = qr.get("kid")
    return out


def check_payload(
    session: Session, keys: QrKeyStore, code: str, payload: str
) -> PayloadCheck:
    """Verify `payload` (the `JZ1…` part of the page URL `/v/{code}/{payload}`) with the
    platform's trust list and compare its facts with the records of `code`."""
    canonical = canonical_or_none(code)
    try:
        signed = replace(decode_payload(payload), url_code=canonical or code)
        trust = parse_trust_list(keys.trust_list_bytes())
    except (InvalidQr, InvalidTrustList) as exc:
        return PayloadCheck(parsed=False, problem=exc.message)
    result = verify_signed_qr(signed, trust)
    facts = signed.facts
    platform = platform_facts(session, canonical) if canonical else {}
    matches: dict[str, bool | None] = {}
    mine = facts.as_json()
    for name in FACT_NAMES:
        recorded = platform.get(name)
        matches[name] = None if recorded is None else recorded == mine[name]
    return PayloadCheck(
        parsed=True,
        signature_ok=result.bottom_line,
        checks=result.checks,
        facts=facts,
        kid=signed.kid_hex,
        matches=matches,
        platform=platform,
    )
