"""The signed QR payload's routes (INTERFACE §7.5): trust list, online check, offline app.

- `GET /ca/trust-list.json`: the platform's QR-signing keys, signed by the platform root
  (`signer.qrkeys`; format in docs/offline-qr.md).
- `GET /v/{code}/{payload}` (and `/V/…`, the upper-case form the QR prints for alphanumeric
  mode): the verification page of `/v/{code}` plus a section on the QR's payload: its
  signature checked against the trust list, and each signed fact against the platform's
  record. `GET /api/v1/public/reports/{code}/qr/{payload}` answers the same as JSON.
- `/offline/`: the offline verifier (a web app with a service worker that caches itself,
  the QR decoder from npm's zxing-wasm, the platform root (`/offline/root.json`) and the
  trust list once that root's signature over it verifies; files in service/pages/offline/).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import orjson
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from service.api import public
from service.api.problems import PROBLEM_JSON
from service.api.routing import DocumentedRoute
from service.api.schemas import QrCheck, TrustList
from service.domain.codes import canonical_or_none
from service.domain.public import display_code, page
from service.domain.qrcheck import PayloadCheck, check_payload
from service.errors import NotFound
from service.state import ServiceState
from verifier.qr import root_fingerprint

router = APIRouter(route_class=DocumentedRoute, tags=["offline"])

OFFLINE_DIR = Path(__file__).resolve().parent.parent / "pages" / "offline"
#: The app's files and their media types (nothing else under /offline/ is served).
OFFLINE_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "sw.js": "text/javascript; charset=utf-8",
    "trust.js": "text/javascript; charset=utf-8",
    "manifest.webmanifest": "application/manifest+json",
    "icon-192.png": "image/png",
    "icon-512.png": "image/png",
    "vendor/zxing-reader.js": "text/javascript; charset=utf-8",
    "vendor/zxing_reader.wasm": "application/wasm",
}
#: The offline page runs WebAssembly (zxing-wasm), hence 'wasm-unsafe-eval'; nothing is
#: loaded from anywhere but this origin.
OFFLINE_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' blob: data:; connect-src 'self'; worker-src 'self'; "
    "manifest-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
MAX_PAYLOAD_CHARS = 1024


# --- trust list --------------------------------------------------------------------------


@router.get(
    "/ca/trust-list.json",
    summary="The QR-signing keys with their windows, signed by the platform root (§7.5)",
    response_class=Response,
    responses={200: {
        "description": "jianzheng-trust/1: `signature.value` is ES256 (r‖s, base64) by the "
        "root `signature.root_id` over the RFC 8785 JSON of the document without `signature` "
        "(docs/offline-qr.md).",
        "model": TrustList,
    }},
)
async def trust_list(request: Request) -> Response:
    state: ServiceState = request.app.state.jz
    data = await run_in_threadpool(lambda: state.qr_keys.get().trust_list_bytes())
    return Response(
        data,
        media_type="application/json",
        headers={"Cache-Control": "no-cache", "ETag": f'"{hashlib.sha256(data).hexdigest()}"'},
    )


# --- the online page of a signed QR ------------------------------------------------------


_env = Environment(
    loader=FileSystemLoader(str(page.TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_SECTION = _env.get_template("qr_check.html")
_ROWS = {
    "code": ("报告标识码", "Code"),
    "report_no": ("报告编号", "Report no."),
    "institution": ("检测机构", "Lab (USCC)"),
    "conclusion": ("检测结论", "Conclusion"),
    "issued_on": ("签发日期", "Issued on"),
    "sealed_at": ("签章时间", "Sealed at"),
    "original_sha256": ("原始文件", "Original PDF"),
}


def qr_section(check: PayloadCheck, en: bool) -> str:
    def t(zh: str, english: str) -> str:
        return english if en else zh

    facts = check.facts.as_json() if check.facts else {}

    def value(name: str) -> str:
        v: Any = facts.get(name)
        if name == "code" and isinstance(v, str):
            return display_code(v)
        if name == "conclusion":
            return t("合格", "pass") if v == "pass" else t("不合格", "fail")
        if name == "sealed_at":
            return page.beijing_time(v, en)
        if name == "original_sha256":
            return f"SHA-256 {v}"
        return str(v)

    rows = [(name, t(*label)) for name, label in _ROWS.items()]
    return _SECTION.render(c=check, t=t, rows=rows, value=value)


def _check(state: ServiceState, code: str, payload: str) -> PayloadCheck:
    with state.read_sessions() as session:
        return check_payload(session, state.qr_keys.get(), code, payload)


def _page(state: ServiceState, code: str, payload: str, en: bool) -> tuple[str, bool]:
    data = public.report_data(state, code)
    html = page.render_page(code, data, en)
    if data is None or len(payload) > MAX_PAYLOAD_CHARS:
        return html, False
    section = qr_section(_check(state, code, payload), en)
    return html.replace("<!--jz-qr-check-->", section, 1), True


async def _signed_page(request: Request, code: str, payload: str, lang: str | None) -> Response:
    state: ServiceState = request.app.state.jz
    en = lang == "en"
    html, known = await run_in_threadpool(_page, state, code, payload, en)
    return HTMLResponse(
        html,
        status_code=200 if known else 404,
        headers={"Cache-Control": "no-store", "Content-Language": "en" if en else "zh-CN"},
    )


@router.get(
    "/v/{code}/{payload}",
    response_class=HTMLResponse,
    summary="The verification page of a signed QR code: the page plus the QR's signature check",
)
async def signed_page(
    code: str, payload: str, request: Request, lang: Annotated[str | None, Query()] = None
) -> Response:
    return await _signed_page(request, code, payload, lang)


@router.get("/V/{code}/{payload}", response_class=HTMLResponse, include_in_schema=False)
async def signed_page_upper(
    code: str, payload: str, request: Request, lang: Annotated[str | None, Query()] = None
) -> Response:
    return await _signed_page(request, code, payload, lang)


@router.get("/V/{code}", include_in_schema=False)
async def page_upper(code: str) -> Response:
    canonical = canonical_or_none(code)
    return RedirectResponse(f"/v/{canonical or 'unknown'}", status_code=308)


@router.get(
    "/api/v1/public/reports/{code}/qr/{payload}",
    summary="A signed QR payload checked against the trust list and the platform's record",
    responses={
        200: {"model": QrCheck},
        404: {"content": {PROBLEM_JSON: {}}},
        429: {"content": {PROBLEM_JSON: {}}},
    },
)
async def signed_check(code: str, payload: str, request: Request) -> Response:
    state: ServiceState = request.app.state.jz
    canonical = canonical_or_none(code)
    known = canonical is not None and (
        await run_in_threadpool(public.report_data, state, canonical)
    ) is not None
    if not known:
        raise NotFound("unknown_code", "the platform never issued this code")
    if len(payload) > MAX_PAYLOAD_CHARS:
        check = PayloadCheck(parsed=False, problem="the payload is too long")
    else:
        check = await run_in_threadpool(_check, state, code, payload)
    return Response(
        orjson.dumps(check.as_json()), media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


# --- the offline app ---------------------------------------------------------------------


@lru_cache(maxsize=16)
def _offline_file(name: str) -> bytes:
    return (OFFLINE_DIR / name).read_bytes()


def _offline_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", **(extra or {})}


@router.get("/offline", include_in_schema=False)
async def offline_redirect() -> Response:
    return RedirectResponse("/offline/", status_code=308)


@router.get(
    "/offline/",
    response_class=HTMLResponse,
    summary="The offline verifier (a web app that checks a QR photo with no network)",
)
async def offline_page() -> Response:
    return HTMLResponse(
        _offline_file("index.html"),
        headers=_offline_headers(
            {"Content-Security-Policy": OFFLINE_CSP, "Content-Language": "zh-CN"}
        ),
    )


def offline_roots_json(state: ServiceState) -> bytes:
    """`/offline/root.json`: the platform root that signs the trust list, which the app's
    service worker caches on install (and serves from its cache afterwards), so a list it
    fetches later is used only when this root's signature over it verifies."""
    der = state.qr_keys.get().ca.root_certificate.public_bytes(Encoding.DER)
    return orjson.dumps({
        "format": "jianzheng-offline-roots/1",
        "roots": [{
            "root_id": root_fingerprint(der),
            "certificate": base64.b64encode(der).decode("ascii"),
        }],
    })


@router.get("/offline/root.json", include_in_schema=False)
async def offline_roots(request: Request) -> Response:
    state: ServiceState = request.app.state.jz
    data = await run_in_threadpool(offline_roots_json, state)
    return Response(data, media_type="application/json", headers=_offline_headers())


@router.get("/offline/{name:path}", include_in_schema=False)
async def offline_file(name: str) -> Response:
    media_type = OFFLINE_FILES.get(name)
    if media_type is None:
        raise NotFound("not_found", "no such file")
    extra = {"Service-Worker-Allowed": "/offline/"} if name == "sw.js" else None
    return Response(_offline_file(name), media_type=media_type, headers=_offline_headers(extra))
