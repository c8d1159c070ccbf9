"""Public verification (INTERFACE.md §5.3): what a phone sees when it scans the QR code.

- `GET /v/{code}`: the verification page (zh-CN; `?lang=en` for English), no framework,
  inline CSS, no script; the status element is `#status[data-status]`.
- `GET /api/v1/public/reports/{code}`: the same facts as JSON; 404 `unknown_code`.
- `GET /api/v1/public/reports/{code}/pdf`: the sealed PDF, to compare with the paper copy.
- `POST /api/v1/public/verify`: multipart `file`, a PDF or a photo/scan of a printed page.

Every public endpoint is rate-limited per client (token bucket shared by every API process;
429 with Retry-After), so codes cannot be enumerated: service.api.gate checks it in ASGI
middleware, before the body is read.

HTTP only: the routes, the rate limit and the answers. The views, the page, the key images
and the verdicts on uploaded copies are domain work (service/domain/public/).

Speed: a view whose checks still hold (service.domain.public.ReportViews.cached_view: one
small query for the code row, the evidence change stamp and the stamp triggers, plus an
`os.stat` per blob file) is answered on the event loop as stored JSON bytes; anything to
check runs in a worker thread, one build per code at a time. The sealing route stores the
signed PDF's signature verdict (`domain.public.prime_verdict`), bound to the file's SHA-256.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api.problems import PROBLEM_JSON
from service.api.routing import DocumentedRoute
from service.api.schemas import PublicReport
from service.api.turns import TurnMemo
from service.domain import public as public_views
from service.domain.codes import canonical_or_none
from service.domain.public import ReportView, render_page
from service.domain.public.images import KEY_IMAGE_MAX_SIDE, key_image_jpeg
from service.domain.public.raw import raw_data_of
from service.domain.public.verify import Verdict, Verification, verify_upload
from service.domain.signing import latest_signed_pdf, read_verified_blob
from service.errors import JianzhengError, NotFound, TooLarge
from service.state import ServiceState


async def _public_state(request: Request) -> ServiceState:
    """The app state, as an async dependency: a plain `def` dependency (deps.StateDep) costs
    a worker-thread round trip on every request, a good part of a cached view's time."""
    state: ServiceState = request.app.state.jz
    return state


PublicStateDep = Annotated[ServiceState, Depends(_public_state)]


router = APIRouter(route_class=DocumentedRoute, tags=["public"])


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
#: Cached JSON answers of the current event-loop turn, keyed by (id(state), code as typed).
TURNS = TurnMemo()


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


async def public_report(code: str, request: Request) -> Response:
    # The hot path: no dependencies to solve (rate limit inline), and a cached view is
    # answered here on the event loop: one small query and a few os.stat calls
    # (ReportViews.cached_view), made once for the requests waiting in this loop turn
    # (service.api.turns). Anything to check goes to a worker thread.
    state: ServiceState = request.app.state.jz
    key = (id(state), code)
    body = TURNS.get(key)
    if body is None:
        body = state.views.get().cached_json(code)
        if body is None:
            body = await run_in_threadpool(report_json, state, code)
            if body is None:
                raise _unknown(code)
        else:
            TURNS.put(key, body)
    return Response(body, media_type="application/json", headers=_NO_STORE)


class _PublicReportRoute(DocumentedRoute):
    """`public_report` called straight with the path's `code`: its only parameters are
    the path segment (a plain string, checked by the view itself) and the request, so
    FastAPI's parameter solving, a third of the cached answer's CPU, is skipped. The
    route, its OpenAPI entry and its problem answers are unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def handler(request: Request) -> Response:
            return await public_report(request.path_params["code"], request)

        return handler


router.add_api_route(
    "/api/v1/public/reports/{code}",
    public_report,
    methods=["GET"],
    summary="A report's status, masked summary, signature, anchor and checked chain",
    responses={
        200: {"model": PublicReport},
        404: {"content": {PROBLEM_JSON: {}}},
        429: {"content": {PROBLEM_JSON: {}}},
    },
    route_class_override=_PublicReportRoute,
)


@router.get(
    "/v/{code}",
    response_class=HTMLResponse,
    summary="The verification page behind the QR code",
)
async def page(
    code: str,
    state: PublicStateDep,
    lang: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    en = lang == "en"
    data = await run_in_threadpool(report_data, state, code)
    html = render_page(code, data, en)
    return HTMLResponse(
        html,
        status_code=200 if data is not None else 404,
        headers={"Cache-Control": "no-store", "Content-Language": "en" if en else "zh-CN"},
    )


_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@router.get(
    "/api/v1/public/reports/{code}/images/{sha256}",
    response_class=Response,
    summary="A key image (关键影像) of a report's chain, downscaled, without metadata",
    description="Only images of media records in the report's checked chain are served "
    "(404 `image_not_found` otherwise), re-encoded as JPEG of at most "
    f"{KEY_IMAGE_MAX_SIDE} px with no EXIF (no GPS, no camera serial). The original's "
    "SHA-256 is in `X-Original-SHA256`; the original itself is in the audit bundle.",
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
    cache_dir = state.settings.data_dir / "public-images"
    jpeg = await run_in_threadpool(
        key_image_jpeg, state.blobs, cache_dir, sha, state.settings.public.max_image_pixels
    )
    return Response(
        jpeg,
        media_type="image/jpeg",
        headers={
            # content-addressed: the rendering of these bytes never changes
            "Cache-Control": "public, max-age=86400, immutable",
            "X-Original-SHA256": sha,
        },
    )


@router.get(
    "/api/v1/public/reports/{code}/raw/{record_id}",
    response_class=Response,
    summary="The raw data of a test record of a report's checked chain (std 4.1.2)",
    description="Inline raw data as JSON, or the data file a test record names "
    "(`raw_data_file`), exactly as stored and checked against its SHA-256. Only test "
    "records of the report's checked chain (cited or not) are served; 404 "
    "`record_not_found` otherwise.",
    responses={200: {"content": {"application/json": {}, "application/octet-stream": {}}}},
)
async def public_raw_data(code: str, record_id: str, state: PublicStateDep) -> Response:
    canonical = canonical_or_none(code)
    if canonical is None:
        raise _unknown(code)
    data = await run_in_threadpool(report_data, state, canonical)
    if data is None:
        raise _unknown(code)
    step = next(
        (s for s in data["chain"] if s["record_id"] == record_id and s.get("raw_data_url")),
        None,
    )
    if step is None or step["check"] == "failed":
        raise NotFound("record_not_found", "no raw data of such a record in this report's chain")
    raw = await run_in_threadpool(raw_data_of, state.views.get(), state.blobs, canonical,
                                  record_id)
    headers = {"Cache-Control": "no-cache", "Content-Disposition":
               f'attachment; filename="{canonical}-{record_id}.{raw.suffix}"'}
    return Response(raw.content, media_type=raw.media_type, headers=headers)


@router.get(
    "/api/v1/public/reports/{code}/pdf",
    response_class=Response,
    summary="The sealed PDF of a report, to compare with a paper copy",
    responses={200: {"content": {"application/pdf": {}}}},
)
async def public_pdf(code: str, state: PublicStateDep) -> Response:
    from service.api.report_pdf import pdf_response

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


def _verify(state: ServiceState, data: bytes) -> Verification:
    return verify_upload(
        data,
        state.views.get(),
        state.sessions,
        state.settings.public.base_url,
        state.untrusted.get(),
    )


@router.post(
    "/api/v1/public/verify",
    response_model=VerifyOut,
    summary="Check a PDF or a photo of a printed page",
)
async def verify(state: PublicStateDep, file: Annotated[UploadFile, File()]) -> Response:
    limit = state.settings.public.max_verify_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge("body_too_large", f"the file exceeds {limit} bytes")
    result = await run_in_threadpool(_verify, state, data)
    return _json_response(result.as_json())


__all__ = ["router"]
