"""RFC 3161 time-stamping: the platform's own TSA, and clients for it or an external one.

* :class:`TimeStampAuthority` answers ``TimeStampReq`` DER with ``TimeStampResp`` DER
  (:meth:`TimeStampAuthority.handle_request`, mounted by the service at its TSA URL) and
  serves pyHanko in-process (:meth:`TimeStampAuthority.timestamper`).
* :func:`http_timestamper` configures an external TSA by URL (production).

Responses follow RFC 3161 with the RFC 5816 ``ESSCertIDv2`` signing-certificate attribute;
the token is a CMS SignedData over a TSTInfo (policy OID, serial, genTime, accuracy, the
request's nonce echoed) signed with the TSA key through a :class:`~signer.keys.KeySource`.
A malformed or unacceptable request gets a ``rejection`` response, never an exception.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from asn1crypto import algos, cms, core, tsp, x509
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from .errors import SignerError, TimestampError
from .keys import KeySource

log = logging.getLogger(__name__)

#: Policy under which the development TSA issues tokens (an RFC 4122 / X.667 ``2.25`` OID).
DEV_TSA_POLICY_OID = "2.25.219071186305938114196366530327441629329"
MAX_REQUEST_BYTES = 4096
MAX_NONCE_BYTES = 32
ACCURACY_MILLIS = 500
TSA_HTTP_TIMEOUT_SECONDS = 10.0
CONTENT_TYPE_QUERY = "application/timestamp-query"
CONTENT_TYPE_REPLY = "application/timestamp-reply"

_DIGESTS: dict[str, int] = {"sha256": 32, "sha384": 48, "sha512": 64}


class _Rejected(Exception):
    def __init__(self, fail_info: str, text: str) -> None:
        super().__init__(text)
        self.fail_info = fail_info
        self.text = text


class TimeStampAuthority:
    """An RFC 3161 TSA signing with ``key_source`` (whose certificate must carry the
    critical ``timeStamping`` extended key usage)."""

    def __init__(
        self,
        key_source: KeySource,
        *,
        policy_oid: str = DEV_TSA_POLICY_OID,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.key_source = key_source
        self.policy_oid = policy_oid
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        cert = key_source.certificate
        eku = cert.extended_key_usage_value
        if eku is None or "time_stamping" not in eku.native:
            raise TimestampError("TSA certificate lacks the timeStamping extended key usage")
        self._cert = cert
        self._chain = key_source.chain
        self._ess_signing_cert = tsp.SigningCertificateV2(
            {
                "certs": [
                    tsp.ESSCertIDv2(
                        {
                            # sha256 is the DEFAULT hashAlgorithm, so it is omitted
                            "cert_hash": hashlib.sha256(cert.dump()).digest(),
                            "issuer_serial": tsp.IssuerSerial(
                                {
                                    "issuer": [
                                        x509.GeneralName(
                                            name="directory_name", value=cert.issuer
                                        )
                                    ],
                                    "serial_number": cert.serial_number,
                                }
                            ),
                        }
                    )
                ]
            }
        )
        self._timestamper: _InProcessTimeStamper | None = None

    # -- HTTP handler -----------------------------------------------------------------------
    def handle_request(self, der: bytes) -> bytes:
        """Answer one ``application/timestamp-query`` body with a ``timestamp-reply`` body."""
        data: bytes = self.respond_der(der).dump()
        return data

    def respond_der(self, der: bytes) -> TimeStampResponse:
        try:
            req = self._parse(der)
        except _Rejected as rej:
            return _rejection(rej.fail_info, rej.text)
        return self.respond(req)

    def respond(self, req: tsp.TimeStampReq) -> TimeStampResponse:
        """Time-stamp a parsed request (validated here as well)."""
        try:
            self._check(req)
        except _Rejected as rej:
            return _rejection(rej.fail_info, rej.text)
        try:
            token = self._token(req)
        except SignerError as exc:
            log.error("TSA signing failed: %s", exc.code)
            return _rejection("system_failure", "the TSA could not sign")
        return TimeStampResponse(
            {"status": tsp.PKIStatusInfo({"status": "granted"}), "time_stamp_token": token}
        )

    # -- in-process client ------------------------------------------------------------------
    def timestamper(self) -> TimeStamper:
        """A pyHanko :class:`TimeStamper` that calls this TSA directly (no HTTP)."""
        if self._timestamper is None:
            self._timestamper = _InProcessTimeStamper(self)
        return self._timestamper

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _parse(der: bytes) -> tsp.TimeStampReq:
        if not isinstance(der, bytes | bytearray) or not der:
            raise _Rejected("bad_data_format", "empty request")
        if len(der) > MAX_REQUEST_BYTES:
            raise _Rejected("bad_data_format", "request too large")
        try:
            req = tsp.TimeStampReq.load(bytes(der), strict=True)
            req.native  # noqa: B018 - forces a full parse so errors surface here
        except (ValueError, TypeError, KeyError):
            raise _Rejected("bad_data_format", "request is not a DER TimeStampReq") from None
        return req

    def _check(self, req: tsp.TimeStampReq) -> None:
        if req["version"].native != "v1":
            raise _Rejected("bad_request", "unsupported request version")
        imprint = req["message_imprint"]
        algo = imprint["hash_algorithm"]["algorithm"].native
        if algo not in _DIGESTS:
            raise _Rejected("bad_alg", f"hash algorithm {algo} not accepted")
        if len(imprint["hashed_message"].native) != _DIGESTS[algo]:
            raise _Rejected("bad_data_format", "hashed message length does not match algorithm")
        policy = req["req_policy"].native
        if policy is not None and policy != self.policy_oid:
            raise _Rejected("unaccepted_policy", "requested policy not supported")
        if req["extensions"].native:
            raise _Rejected("unaccepted_extensions", "request extensions not supported")
        nonce = req["nonce"].native
        if nonce is not None and (nonce < 0 or nonce.bit_length() > MAX_NONCE_BYTES * 8):
            raise _Rejected("bad_request", "nonce out of range")

    def _token(self, req: tsp.TimeStampReq) -> cms.ContentInfo:
        now = self._clock().astimezone(dt.UTC)
        now = now.replace(microsecond=(now.microsecond // 1000) * 1000)
        tst: dict[str, object] = {
            "version": "v1",
            "policy": self.policy_oid,
            "message_imprint": req["message_imprint"].copy(),
            "serial_number": secrets.randbits(120) | (1 << 120),
            "gen_time": core.GeneralizedTime(now),
            "accuracy": tsp.Accuracy({"millis": ACCURACY_MILLIS}),
            "tsa": x509.GeneralName(name="directory_name", value=self._cert.subject),
        }
        if req["nonce"].native is not None:
            tst["nonce"] = req["nonce"].native
        tst_der = tsp.TSTInfo(tst).dump()
        digest_algo = "sha256"
        signed_attrs = cms.CMSAttributes(
            [
                cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
                cms.CMSAttribute(
                    {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]}
                ),
                cms.CMSAttribute(
                    {"type": "signing_certificate_v2", "values": [self._ess_signing_cert]}
                ),
            ]
        )
        signature = self.key_source.sign_raw(signed_attrs.dump(), digest_algo)
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number",
                    value=cms.IssuerAndSerialNumber(
                        {"issuer": self._cert.issuer, "serial_number": self._cert.serial_number}
                    ),
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest_algo}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": self.key_source.signature_algorithm(digest_algo),
                "signature": signature,
            }
        )
        signed_data: dict[str, object] = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest_algo})],
            "encap_content_info": cms.EncapsulatedContentInfo(
                {"content_type": "tst_info", "content": cms.ParsableOctetString(tst_der)}
            ),
            "signer_infos": [signer_info],
        }
        if req["cert_req"].native:
            signed_data["certificates"] = [
                cms.CertificateChoices(name="certificate", value=c) for c in self._chain
            ]
        return cms.ContentInfo(
            {"content_type": "signed_data", "content": cms.SignedData(signed_data)}
        )


class TimeStampResponse(core.Sequence):  # type: ignore[misc]  # asn1crypto has no types: base is Any
    """RFC 3161 ``TimeStampResp``. asn1crypto's ``tsp.TimeStampResp`` makes
    ``timeStampToken`` mandatory, but the RFC has it OPTIONAL (absent when rejected)."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _rejection(fail_info: str, text: str) -> TimeStampResponse:
    return TimeStampResponse(
        {
            "status": tsp.PKIStatusInfo(
                {
                    "status": "rejection",
                    "status_string": [text],
                    "fail_info": tsp.PKIFailureInfo({fail_info}),
                }
            )
        }
    )


class _InProcessTimeStamper(TimeStamper):
    def __init__(self, authority: TimeStampAuthority) -> None:
        # pyHanko leaves TimeStamper.__init__ unannotated
        super().__init__(include_nonce=True)  # type: ignore[no-untyped-call]
        self._authority = authority

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> Any:
        # Round-trip through DER so the in-process path exercises the same parser as HTTP.
        return TimeStampResponse.load(self._authority.handle_request(req.dump()))


def http_timestamper(
    url: str,
    *,
    timeout: float = TSA_HTTP_TIMEOUT_SECONDS,
    username: str | None = None,
    password: str | None = None,
) -> TimeStamper:
    """A client for an external RFC 3161 TSA at ``url`` (HTTPS required unless local)."""
    local = url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))
    if not (url.startswith("https://") or local):
        raise TimestampError("the TSA URL must use https:// (plain http only for localhost)")
    auth = (username, password) if username is not None and password is not None else None
    return _HTTPTimeStamper(url, timeout=timeout, auth=auth)


class _HTTPTimeStamper(HTTPTimeStamper):
    """pyHanko's HTTP client, reading the reply with `TimeStampResponse`.

    pyHanko parses the reply with asn1crypto's ``tsp.TimeStampResp``, which requires the
    token, so a TSA's *refusal* (status only, as RFC 3161 has it) fails as a parse error
    instead of saying why. Re-read with the RFC's schema, pyHanko's own status check then
    raises ``TimestampRequestError`` with the TSA's status string and failure info.
    """

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> Any:
        reply = await super().async_request_tsa_response(req)
        try:
            parsed = TimeStampResponse.load(reply.dump())
            _ = parsed["status"]["status"].native  # parse now: a garbled reply fails here
        except (ValueError, TypeError, KeyError) as exc:
            raise TimestampRequestError("the TSA's reply is not a TimeStampResp") from exc
        return parsed
