"""Checking a copy someone holds (`POST /api/v1/public/verify`, INTERFACE §5.3).

A PDF is genuine when it is byte for byte the platform's sealed copy; otherwise its
signature and its QR code say whether it is a modified copy of ours or not ours at all.
A photo or scan of a printed page can be checked only through the report its QR code
names: its verdict follows that report's status.
"""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy.orm import Session, sessionmaker

from service.domain.codes import canonical_or_none
from service.domain.public.untrusted import UntrustedWork
from service.domain.public.views import ReportViews, report_view
from service.domain.signing import code_of_signed_pdf

Verdict = Literal["genuine", "modified", "not_ours", "unreadable"]
#: The public status of a report by its canonical code, None for a code never issued.
StatusOf = Callable[[str], str | None]


@dataclass(frozen=True)
class Verification:
    verdict: Verdict
    code: str | None = None
    status: str | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def code_from_url(text: str, base_url: str) -> str | None:
    """The canonical code in `{base}/v/{CODE}` or `{BASE}/V/{CODE}/JZ1…`, or None when the
    URL is not ours."""
    base = base_url.rstrip("/")
    text = text.strip()
    if not text.lower().startswith((base + "/v/").lower()):
        return None
    rest = urllib.parse.unquote(text[len(base) + 3 :]).split("?")[0].split("#")[0].rstrip("/")
    # `/V/{CODE}/JZ1…`: the signed payload of §7.5 follows the code (docs/offline-qr.md)
    rest, _, payload = rest.partition("/")
    if payload and not payload.upper().startswith("JZ1"):
        return None
    return canonical_or_none(rest)


def verify_image(data: bytes, untrusted: UntrustedWork, status_of: StatusOf,
                 base_url: str) -> Verification:
    """An image's verdict: its QR codes decoded (in the sandbox), then `verdict_from_qr`."""
    texts, unreadable = untrusted.image(data)
    if unreadable is not None:
        return Verification("unreadable", detail=unreadable)
    return verdict_from_qr(list(texts), status_of, base_url)


def verdict_from_qr(texts: list[str], status_of: StatusOf, base_url: str) -> Verification:
    """An image's verdict from its QR texts (INTERFACE §5.3)."""
    if not texts:
        return Verification("unreadable", detail="no QR code found")
    for text in texts:
        code = code_from_url(text, base_url)
        if code is None:
            continue
        status = status_of(code)
        if status is None:
            return Verification(
                "not_ours", code=code, detail="the QR code names a code the platform never issued"
            )
        # A photo can be checked only through the report its QR names, so (§5.3) the
        # verdict is "genuine" exactly when that report's status is genuine. Of the other
        # verdicts only "modified" fits a QR of ours whose report does not stand (revoked,
        # superseded, not yet anchored, or its evidence fails its checks); `status` says
        # which, so a client never reads a revoked report's photo as genuine.
        if status == "genuine":
            return Verification("genuine", code=code, status=status, detail="QR code decoded")
        return Verification(
            "modified",
            code=code,
            status=status,
            detail=f"the QR code names a report of ours whose status is {status}",
        )
    return Verification("not_ours", detail="the QR code does not point to this platform")


def verify_pdf(
    data: bytes,
    sessions: sessionmaker[Session],
    untrusted: UntrustedWork,
    status_of: StatusOf,
) -> Verification:
    """A PDF's verdict: our sealed copy byte for byte; else (from the sandboxed checks,
    `untrusted`) an evidence certificate of ours, our signature, or not ours."""
    sha = hashlib.sha256(data).hexdigest()
    with sessions() as session:
        code = code_of_signed_pdf(session, sha)
    if code is not None:
        return Verification(
            "genuine",
            code=code,
            status=status_of(code),
            detail="byte-identical to the platform's sealed copy",
        )
    facts = untrusted.pdf(data)
    if facts.certificate is not None:
        verdict, cert_code, why = facts.certificate
        cert_status = status_of(cert_code) if cert_code else None
        return Verification(
            cast(Verdict, verdict), code=cert_code, status=cert_status, detail=why
        )
    if facts.unreadable is not None:
        return Verification("unreadable", detail=facts.unreadable)
    named = next((c for c in facts.qr_codes if c), None)
    named_code = canonical_or_none(named) if named else None
    status = status_of(named_code) if named_code else None
    if facts.signed and (facts.trusted or facts.issued_by_us):
        # Our key signed it, but it is not the file we hold: changed after signing, or a
        # file the platform never issued under that code.
        problems = ", ".join(facts.finding_codes) or "differs"
        return Verification(
            "modified",
            code=named_code,
            status=status,
            detail=f"signed by the platform but not the platform's copy ({problems})",
        )
    if named_code is not None and status is not None and not facts.signed:
        return Verification(
            "modified",
            code=named_code,
            status=status,
            detail="carries the QR code of a report of ours but not its signature",
        )
    return Verification(
        "not_ours",
        code=named_code if status is not None else None,
        status=status,
        detail="not signed by the platform",
    )


def verify_upload(
    data: bytes,
    views: ReportViews,
    sessions: sessionmaker[Session],
    base_url: str,
    untrusted: UntrustedWork,
) -> Verification:
    """The verdict on an uploaded file: a PDF (`verify_pdf`) or an image (`verify_image`)."""
    if not data:
        return Verification("unreadable", detail="empty file")

    def status_of(code: str) -> str | None:
        view = report_view(views, sessions, code)
        return view.status if view is not None else None

    if b"%PDF-" in data[:1024]:
        return verify_pdf(data, sessions, untrusted, status_of)
    return verify_image(data, untrusted, status_of, base_url)
