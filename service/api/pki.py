"""The platform's own PKI endpoints (development CA).

- `POST /tsa`: an RFC 3161 time-stamp authority (`application/timestamp-query` ->
  `application/timestamp-reply`), keyed by the dev CA's TSA certificate. Production
  points `JZ_SIGNING__TSA_URL` at a licensed TSA instead.
- `GET /ca/root.crl`: the root's CRL, named in every certificate the dev CA issues
  (PAdES B-LT embeds it).
- `GET /ca/roots.pem`: the roots a verifier should trust (same as `jianzheng ca roots`).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from service.api.deps import StateDep
from service.api.routing import DocumentedRoute
from service.domain.trust import trust_roots_pem
from service.errors import NotFound, TooLarge, UnsupportedMediaType
from service.settings import Settings

router = APIRouter(route_class=DocumentedRoute, tags=["pki"])

#: A TimeStampReq is a few hundred bytes; anything larger is not one.
MAX_TSA_REQUEST_BYTES = 16 * 1024
TSA_QUERY = "application/timestamp-query"
TSA_REPLY = "application/timestamp-reply"


def tsa_served(settings: Settings) -> bool:
    """`POST /tsa` is open in development; in production only if JZ_SIGNING__SERVE_TSA (which
    start-up refuses as unsafe), so the platform's TSA key never stamps for strangers."""
    serve = settings.signing.serve_tsa
    return settings.env == "development" if serve is None else serve


@router.post(
    "/tsa",
    summary="RFC 3161 time-stamp authority (development)",
    response_class=Response,
    responses={200: {"content": {TSA_REPLY: {}}}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "An RFC 3161 TimeStampReq (DER, at most 16 KiB), e.g. from "
            "`openssl ts -query -data report.pdf -sha256 -cert -out query.tsq`.",
            "content": {TSA_QUERY: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def timestamp(request: Request, state: StateDep) -> Response:
    if not tsa_served(state.settings):
        raise NotFound("not_found", "the built-in time-stamp authority is not served here")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != TSA_QUERY:
        raise UnsupportedMediaType("unsupported_media_type", f"send {TSA_QUERY}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_TSA_REQUEST_BYTES:
            raise TooLarge("body_too_large", "a time-stamp query is at most 16 KiB")
    signer = await asyncio.to_thread(state.signer.get)
    # A malformed query gets a signed rejection (PKIStatus), as RFC 3161 §2.4.2 asks.
    reply = await asyncio.to_thread(signer.authority.handle_request, bytes(body))
    return Response(reply, media_type=TSA_REPLY)


@router.get("/ca/root.crl", summary="CRL of the development root", response_class=Response)
async def root_crl(state: StateDep) -> Response:
    signer = await asyncio.to_thread(state.signer.get)
    crl = await asyncio.to_thread(signer.ca.crl_der)
    return Response(crl, media_type="application/pkix-crl")


@router.get("/ca/roots.pem", summary="PEM roots to trust for report signatures")
async def roots(state: StateDep) -> Response:
    signer = await asyncio.to_thread(state.signer.get)
    return Response(
        trust_roots_pem(state.settings, signer.ca), media_type="application/x-pem-file"
    )
