"""Public verification (INTERFACE.md §5.3): what a phone sees when it scans the QR code.

- `GET /v/{code}`: the verification page (zh-CN; `?lang=en` for English), no framework,
  inline CSS, no script; the status element is `#status[data-status]`.
- `GET /api/v1/public/reports/{code}`: the same facts as JSON; 404 `unknown_code`.
- `GET /api/v1/public/reports/{code}/pdf`: the sealed PDF, to compare with the paper copy.
- `POST /api/v1/public/verify`: multipart `file`, a PDF or a photo/scan of a printed page.

Every public endpoint is rate-limited per client address (token bucket; 429 with
Retry-After), so codes cannot be enumerated.

Speed: a view whose checks still hold (service.domain.public.ReportViews.cached_view: one
small query for the code row, the evidence change stamp and the stamp triggers, plus an
`os.stat` per blob file) is answered on the event loop as stored JSON bytes; anything to
check runs in a worker thread, one build per code at a time. The sealing route stores the
signed PDF's signature verdict (`domain.public.prime_verdict`), bound to the file's SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api.problems import PROBLEM_JSON
from service.clock import CHINA_TZ
from service.domain import public as public_views
from service.domain.codes import canonical_or_none
from service.domain.public import (
    STATUS_LABELS,
    TIME_FIELDS,
    ReportView,
    display_code,
)
from service.domain.signing import code_of_signed_pdf, latest_signed_pdf
from service.errors import Invalid, JianzhengError, NotFound, RateLimited, TooLarge
from service.state import ServiceState
from verifier.pdf import PdfUnreadable

log = logging.getLogger(__name__)

Verdict = Literal["genuine", "modified", "not_ours", "unreadable"]

#: Largest upload `POST /api/v1/public/verify` reads (the app's body limit applies first).
MAX_VERIFY_BYTES = 20 * 1024 * 1024
#: Largest image decoded, in pixels (a 50-megapixel photo), against decompression bombs.
MAX_IMAGE_PIXELS = 50_000_000
#: Tokens one verify request costs (it renders and decodes; a page view costs 1).
VERIFY_COST = 5.0

TEMPLATES = Path(__file__).resolve().parent.parent / "pages" / "templates"
_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

FIELD_LABELS: dict[str, tuple[str, str]] = {
    "name": ("名称", "name"),
    "project_name": ("项目名称", "project"),
    "project_no": ("项目编号", "project no."),
    "location": ("地点", "location"),
    "address": ("地址", "address"),
    "builder": ("建设单位", "client"),
    "constructor": ("施工单位", "contractor"),
    "supervisor": ("监理单位", "supervisor"),
    "region": ("区划", "region"),
    "contract_no": ("合同编号", "contract no."),
    "title": ("标题", "title"),
    "signed_on": ("签订日期", "signed on"),
    "client": ("委托单位", "client"),
    "commission_no": ("委托编号", "commission no."),
    "items": ("检测项目", "items"),
    "item": ("检测项目", "item"),
    "test_items": ("检测项目", "items"),
    "sample_code": ("样品编码", "sample code"),
    "unique_code": ("唯一性编码", "unique code"),
    "code": ("编码", "code"),
    "sample_name": ("样品名称", "sample"),
    "spec": ("规格", "spec"),
    "specification": ("规格", "spec"),
    "quantity": ("数量", "quantity"),
    "sampled_at": ("取样时间", "sampled at"),
    "sampler": ("取样人", "sampler"),
    "part": ("部位", "part"),
    "seal_code": ("封志编号", "seal no."),
    "sealed_at": ("封样时间", "sealed at"),
    "sealed_by": ("封样人", "sealed by"),
    "algorithm": ("算法", "algorithm"),
    "witness": ("见证人", "witness"),
    "witness_name": ("见证人", "witness"),
    "witness_unit": ("见证单位", "witness unit"),
    "unit": ("单位", "unit"),
    "place": ("地点", "place"),
    "witnessed_at": ("见证时间", "witnessed at"),
    "time": ("时间", "time"),
    "kind": ("类型", "kind"),
    "caption": ("说明", "caption"),
    "taken_at": ("拍摄时间", "taken at"),
    "description": ("说明", "description"),
    "received_at": ("收样时间", "received at"),
    "received_by": ("收样人", "received by"),
    "seal_check": ("验封", "seal check"),
    "seal_intact": ("封志完好", "seal intact"),
    "condition": ("样品状态", "condition"),
    "test_item": ("检测项目", "test"),
    "method": ("方法", "method"),
    "standard": ("标准", "standard"),
    "device": ("设备", "device"),
    "device_id": ("设备编号", "device no."),
    "tested_at": ("检测时间", "tested at"),
    "result": ("结果", "result"),
    "conclusion": ("结论", "conclusion"),
    "tester": ("检测人", "tester"),
    "correction_reason": ("更正原因", "corrected because"),
    "report_no": ("报告编号", "report no."),
    "issued_on": ("签发日期", "issued on"),
    "approver": ("批准人", "approver"),
    "reason": ("原因", "reason"),
    "superseded_by": ("更正为", "superseded by"),
    "activities": ("见证内容", "witnessed"),
}

#: Enumerated values of a step's details as a person reads them: (zh, en).
VALUE_LABELS: dict[str, dict[str, tuple[str, str]]] = {
    # service.domain.records.WitnessActivity
    "activities": {
        "sampling": ("取样", "sampling"),
        "making": ("制样", "specimen making"),
        "marking": ("标识", "marking"),
        "sealing": ("封样", "sealing"),
        "delivery": ("送检", "delivery"),
        "onsite_testing": ("现场检测", "on-site testing"),
    },
    "conclusion": {"pass": ("合格", "pass"), "fail": ("不合格", "fail")},
    # service.domain.records.MediaIn.kind
    "kind": {
        "image": ("图片", "image"),
        "video": ("视频", "video"),
        "audio": ("音频", "audio"),
        "document": ("文档", "document"),
        "data": ("数据", "data"),
    },
}


# --- rate limiting ---------------------------------------------------------------------------


def _client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _public_state(request: Request) -> ServiceState:
    """The app state, as an async dependency: a plain `def` dependency (deps.StateDep) costs
    a worker-thread round trip on every request, a good part of a cached view's time."""
    state: ServiceState = request.app.state.jz
    return state


PublicStateDep = Annotated[ServiceState, Depends(_public_state)]


def take_rate(request: Request, state: ServiceState, cost: float) -> None:
    """Charge the client `cost` tokens; 429 with Retry-After when it has none left."""
    wait = state.rate_limiter.take(_client_key(request), cost)
    if wait > 0:
        raise RateLimited(
            "rate_limited",
            "too many requests from this address; try again later",
            retry_after_s=wait,
        )


def _rate_limited(cost: float) -> Any:
    """`take_rate` as a dependency, for routes whose body must not be read first."""

    async def dependency(request: Request) -> None:
        take_rate(request, request.app.state.jz, cost)

    return Depends(dependency)


router = APIRouter(tags=["public"])


# --- views -----------------------------------------------------------------------------------


def report_view(state: ServiceState, code: str) -> ReportView | None:
    """The checked view of a report, or None for a code never issued."""
    return public_views.report_view(state.views.get(), state.sessions, code)


def report_data(state: ServiceState, code: str) -> dict[str, Any] | None:
    """The public JSON of a report, or None for a code never issued."""
    view = report_view(state, code)
    return view.data if view is not None else None


def report_json(state: ServiceState, code: str) -> bytes | None:
    """`report_data` as JSON bytes."""
    view = report_view(state, code)
    return view.json if view is not None else None


_NO_STORE = {"Cache-Control": "no-store"}


def _json_response(data: Any, status: int = 200, media_type: str = "application/json") -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type=media_type, headers=_NO_STORE
    )


def _unknown(code: str) -> JianzhengError:
    """404 `unknown_code`. What the visitor typed is never echoed (it could be an ID or a
    phone number): only a well-formed code, in its canonical form."""
    canonical = canonical_or_none(code)
    if canonical is None:
        return NotFound(
            "unknown_code",
            "not a report code: a report code is 19 characters of 0-9 and A-Z"
            " (separators aside) ending in a check character",
        )
    return NotFound("unknown_code", f"the platform never issued the code {canonical}")


@router.get(
    "/api/v1/public/reports/{code}",
    summary="A report's status, masked summary, signature, anchor and checked chain",
    responses={404: {"content": {PROBLEM_JSON: {}}}, 429: {"content": {PROBLEM_JSON: {}}}},
)
async def public_report(code: str, request: Request) -> Response:
    # The hot path: no dependencies to solve (rate limit inline), and a cached view is
    # answered here on the event loop: one small query and a few os.stat calls
    # (ReportViews.cached_view). Anything to check goes to a worker thread.
    state: ServiceState = request.app.state.jz
    take_rate(request, state, 1.0)
    body = state.views.get().cached_json(code)
    if body is None:
        body = await run_in_threadpool(report_json, state, code)
        if body is None:
            raise _unknown(code)
    return Response(body, media_type="application/json", headers=_NO_STORE)


def _parse_time(value: Any) -> datetime | None:
    """A point in time from the view's data: RFC 3339 with an offset, or Unix seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def beijing_time(value: Any, en: bool) -> str:
    """Every time on the page, in one form: `2026-11-22 18:00:05 (北京时间)` / `(UTC+8)`."""
    if value is None or value == "":
        return "—"
    parsed = _parse_time(value)
    if parsed is None:
        return str(value)
    stamp = parsed.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} {'(UTC+8)' if en else '(北京时间)'}"


def detail_text(key: str, value: Any, en: bool) -> str:
    """One detail of a step as a person reads it (times in Beijing time, enums translated)."""
    if value is True:
        return "✓"
    if value is False:
        return "✗"
    labels = VALUE_LABELS.get(key, {})
    if isinstance(value, list):
        names = [labels[v][1 if en else 0] if v in labels else str(v) for v in value]
        return (", " if en else "、").join(names)
    if key in TIME_FIELDS:
        return beijing_time(value, en)
    if isinstance(value, str) and value in labels:
        return labels[value][1 if en else 0]
    return str(value)


def render_page(state: ServiceState, code: str, data: dict[str, Any] | None, en: bool) -> str:
    status = data["status"] if data else "unknown"
    zh, english = STATUS_LABELS[status]

    def t(zh_text: str | None, en_text: str | None) -> str:
        return (en_text if en else zh_text) or (zh_text or en_text or "")

    # Only a well-formed code is ever shown or linked; raw input is not echoed back.
    canonical = data["code"] if data else canonical_or_none(code)
    if canonical:
        base = f"/v/{canonical}"
        other_lang_url = base if en else base + "?lang=en"
    else:
        other_lang_url = "?lang=zh" if en else "?lang=en"
    return _env.get_template("report.html").render(
        en=en,
        t=t,
        status=status,
        status_zh=zh,
        status_en=english,
        code_display=display_code(canonical) if canonical else None,
        v=data or {},
        r=(data or {}).get("report"),
        local=lambda v: beijing_time(v, en),
        show=lambda k, v: detail_text(k, v, en),
        group=display_code,
        time_fields=TIME_FIELDS,
        label=lambda k: t(*FIELD_LABELS.get(k, (k, k))),
        other_lang_url=other_lang_url,
        checked_at=beijing_time(datetime.now(UTC).isoformat(), en),
    )


@router.get(
    "/v/{code}",
    response_class=HTMLResponse,
    summary="The verification page behind the QR code",
    dependencies=[_rate_limited(1.0)],
)
async def page(
    code: str,
    state: PublicStateDep,
    lang: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    en = lang == "en"
    data = await run_in_threadpool(report_data, state, code)
    html = render_page(state, code, data, en)
    return HTMLResponse(
        html,
        status_code=200 if data is not None else 404,
        headers={"Cache-Control": "no-store", "Content-Language": "en" if en else "zh-CN"},
    )


#: Longest side of a key image as the public page serves it (pixels).
KEY_IMAGE_MAX_SIDE = 1024
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@router.get(
    "/api/v1/public/reports/{code}/images/{sha256}",
    response_class=Response,
    summary="A key image (关键影像) of a report's chain, downscaled, without metadata",
    description="Only images of media records in the report's checked chain are served "
    "(404 `image_not_found` otherwise), re-encoded as JPEG of at most "
    f"{KEY_IMAGE_MAX_SIDE} px with no EXIF (no GPS, no camera serial). The original's "
    "SHA-256 is in `X-Original-SHA256`; the original itself is in the audit bundle.",
    dependencies=[_rate_limited(1.0)],
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def public_image(code: str, sha256: str, state: PublicStateDep) -> Response:
    canonical = canonical_or_none(code)
    if canonical is None:
        raise _unknown(code)
    sha = sha256.lower()
    if not _SHA256_RE.match(sha):
        raise NotFound("image_not_found", "no such image in this report's chain")
    data = await run_in_threadpool(report_data, state, canonical)
    if data is None:
        raise _unknown(code)
    if not any((step.get("image") or {}).get("sha256") == sha for step in data["chain"]):
        raise NotFound("image_not_found", "no such image in this report's chain")
    jpeg = await run_in_threadpool(_key_image_jpeg, state, sha)
    return Response(
        jpeg,
        media_type="image/jpeg",
        headers={
            # content-addressed: the rendering of these bytes never changes
            "Cache-Control": "public, max-age=86400, immutable",
            "X-Original-SHA256": sha,
        },
    )


def _key_image_jpeg(state: ServiceState, sha: str) -> bytes:
    """The public rendering of a stored image: verified, downscaled, re-encoded (cached)."""
    from PIL import Image, ImageOps

    from service.domain.signing import read_verified_blob

    cache = state.settings.data_dir / "public-images" / f"{sha}.jpg"
    try:
        return cache.read_bytes()
    except FileNotFoundError:
        pass
    original = read_verified_blob(state.blobs, sha)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(original)) as opened:
            upright = ImageOps.exif_transpose(opened)  # as taken; EXIF is dropped below
            upright.thumbnail((KEY_IMAGE_MAX_SIDE, KEY_IMAGE_MAX_SIDE))
            out = io.BytesIO()
            upright.convert("RGB").save(out, format="JPEG", quality=82, optimize=True)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise Invalid(
            "image_unreadable", "the stored file is not a readable image"
        ) from None
    jpeg = out.getvalue()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(jpeg)
    os.replace(tmp, cache)
    return jpeg


@router.get(
    "/api/v1/public/reports/{code}/pdf",
    response_class=Response,
    summary="The sealed PDF of a report, to compare with a paper copy",
    dependencies=[_rate_limited(2.0)],
    responses={200: {"content": {"application/pdf": {}}}},
)
async def public_pdf(code: str, state: PublicStateDep) -> Response:
    from service.api.report_pdf import pdf_response
    from service.domain.signing import read_verified_blob

    canonical = canonical_or_none(code)
    if canonical is None:
        raise _unknown(code)

    def load() -> tuple[str, str] | None:
        with state.sessions() as session:
            sha256 = latest_signed_pdf(session, canonical)
            return (canonical, sha256) if sha256 else None

    found = await run_in_threadpool(load)
    if found is None:
        known = await run_in_threadpool(report_data, state, canonical)
        if known is None:
            raise _unknown(code)
        raise NotFound("pdf_not_found", "this report has no sealed PDF yet")
    data = await run_in_threadpool(read_verified_blob, state.blobs, found[1])
    return pdf_response(data, canonical, found[1])


# --- verify a copy -----------------------------------------------------------------------------


class VerifyOut(BaseModel):
    verdict: Verdict
    code: str | None
    status: str | None
    detail: str | None = None


@dataclass(frozen=True)
class Verification:
    verdict: Verdict
    code: str | None = None
    status: str | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def decode_qr_texts(image: Any) -> list[str]:
    """Texts of the QR codes zxing-cpp finds, trying degraded-photo variants in turn."""
    import zxingcpp
    from PIL import Image, ImageOps

    qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    gray = ImageOps.exif_transpose(image).convert("L")
    variants = [gray]
    largest = max(gray.size)
    for side in (2000, 1200, 800):
        if largest > side * 1.2:
            scaled = gray.copy()
            scaled.thumbnail((side, side), Image.Resampling.LANCZOS)
            variants.append(scaled)
    for angle in (5, -5):
        variants.append(
            gray.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
        )
    variants.append(ImageOps.autocontrast(gray))
    for variant in variants:
        found = zxingcpp.read_barcodes(variant, formats=qr_only)
        texts = [b.text for b in found if b.text]
        if texts:
            return texts
    return []


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


def _status_of(state: ServiceState, code: str) -> str | None:
    data = report_data(state, code)
    return data["status"] if data else None


def verify_image(state: ServiceState, data: bytes) -> Verification:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            texts = decode_qr_texts(img)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return Verification("unreadable", detail="not a readable PDF or image")
    return verdict_from_qr(state, texts)


def verdict_from_qr(state: ServiceState, texts: list[str]) -> Verification:
    """An image's verdict from its QR texts (INTERFACE §5.3)."""
    if not texts:
        return Verification("unreadable", detail="no QR code found")
    base = state.settings.public.base_url
    for text in texts:
        code = code_from_url(text, base)
        if code is None:
            continue
        status = _status_of(state, code)
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


def verify_pdf(state: ServiceState, data: bytes) -> Verification:
    """A PDF's verdict: our sealed copy byte for byte; else our signature; else not ours."""
    sha = hashlib.sha256(data).hexdigest()
    with state.sessions() as session:
        code = code_of_signed_pdf(session, sha)
    if code is not None:
        return Verification(
            "genuine",
            code=code,
            status=_status_of(state, code),
            detail="byte-identical to the platform's sealed copy",
        )
    # Evidence certificates (存证证书, §7.6) are recognised by service/domain/certificate.py.
    from service.domain.certificate import certificate_verdict

    cert = certificate_verdict(state.signer.get(), data)
    if cert is not None:
        verdict, cert_code, why = cert
        cert_status = _status_of(state, cert_code) if cert_code else None
        return Verification(verdict, code=cert_code, status=cert_status, detail=why)
    checker = state.views.get().signature_check
    assert isinstance(checker, public_views.SignatureChecker)
    try:
        result = checker.verify(data)
    except PdfUnreadable:
        return Verification("unreadable", detail="the PDF could not be read")
    named = next((c for c in result.qr_codes if c), None)
    named_code = canonical_or_none(named) if named else None
    status = _status_of(state, named_code) if named_code else None
    if result.signed and (result.trusted or checker.issued_by_us(data)):
        # Our key signed it, but it is not the file we hold: changed after signing, or a
        # file the platform never issued under that code.
        problems = ", ".join(sorted(str(c) for c in result.finding_codes)) or "differs"
        return Verification(
            "modified",
            code=named_code,
            status=status,
            detail=f"signed by the platform but not the platform's copy ({problems})",
        )
    if named_code is not None and status is not None and not result.signed:
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


def verify_upload(state: ServiceState, data: bytes) -> Verification:
    if not data:
        return Verification("unreadable", detail="empty file")
    if b"%PDF-" in data[:1024]:
        return verify_pdf(state, data)
    return verify_image(state, data)


@router.post(
    "/api/v1/public/verify",
    response_model=VerifyOut,
    summary="Check a PDF or a photo of a printed page",
    dependencies=[_rate_limited(VERIFY_COST)],
)
async def verify(state: PublicStateDep, file: Annotated[UploadFile, File()]) -> Response:
    data = await file.read(MAX_VERIFY_BYTES + 1)
    if len(data) > MAX_VERIFY_BYTES:
        raise TooLarge("body_too_large", f"the file exceeds {MAX_VERIFY_BYTES} bytes")
    result = await run_in_threadpool(verify_upload, state, data)
    return _json_response(result.as_json())


__all__ = ["router"]
