"""The SM2 co-signature of an evidence certificate (存证证书, INTERFACE §7.6, §7.7).

A deployment that co-signs with SM2 embeds, before the PAdES signature (which then covers
it), one PDF attachment ``jianzheng-sm2-signature.json``::

    {"format": "jianzheng-certificate-sm2/1",
     "statement": {"code", "report_no", "institution", "status", "issued_at",
                   "records": [{"record_id", "type", "leaf_hash", "files", "seq", "root",
                                "chain_id", "registry", "tx_hash", "block_number"}, ...]},
     "signature": {"alg": "SM2", "certificate": "<base64 DER>", "value": "<base64 r‖s>"}}

``value`` is SM2 with SM3 (default distinguishing ID) over the RFC 8785 canonical JSON of
``statement``; ``certificate`` is the platform's SM2 key's, issued by a platform root
(ES256). So the certificate's facts verify with SM2 alone, beside the PAdES signature that
pdfsig and Adobe check.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from verifier import sm2
from verifier.canonical import canonicalize
from verifier.errors import CanonicalizationError
from verifier.models import Check
from verifier.qr import certificate_spki, issuing_root

FORMAT = "jianzheng-certificate-sm2/1"
ATTACHMENT = "jianzheng-sm2-signature.json"
MAX_ATTACHMENT_BYTES = 4 * 1024 * 1024


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    """What the SM2 signature covers: the RFC 8785 canonical JSON of the statement."""
    return canonicalize(dict(statement))


def read_attachment(pdf: bytes) -> dict[str, Any] | None:
    """The parsed co-signature attachment of a PDF, or None when it has none."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        names = reader.root.get("/Names")
        tree = names.get_object().get("/EmbeddedFiles") if names is not None else None
        entries = tree.get_object().get("/Names") if tree is not None else None
        if entries is None:
            return None
        entries = entries.get_object()
        for i in range(0, len(entries) - 1, 2):
            if str(entries[i]) != ATTACHMENT:
                continue
            stream = entries[i + 1].get_object()["/EF"]["/F"].get_object()
            data = stream.data
            if len(data) > MAX_ATTACHMENT_BYTES:
                return None
            doc = json.loads(data)
            return doc if isinstance(doc, dict) else None
    except Exception:  # noqa: BLE001 - a damaged file simply has no readable co-signature
        return None
    return None


def check_certificate_sm2(pdf: bytes, roots_der: Sequence[bytes]) -> Check | None:
    """The certificate's SM2 co-signature against the platform roots; None without one."""
    doc = read_attachment(pdf)
    if doc is None:
        return None
    return check_statement(doc, roots_der)


def check_statement(doc: Mapping[str, Any], roots_der: Sequence[bytes]) -> Check:
    """An attachment document (``read_attachment``) checked against the roots."""
    name = "certificate_sm2"
    sig, statement = doc.get("signature"), doc.get("statement")
    if doc.get("format") != FORMAT or not isinstance(sig, Mapping) \
            or not isinstance(statement, Mapping) or sig.get("alg") != "SM2":
        return Check(name, False, f"not a {FORMAT} co-signature")
    try:
        cert = base64.b64decode(str(sig.get("certificate")), validate=True)
        value = base64.b64decode(str(sig.get("value")), validate=True)
        message = statement_bytes(statement)
    except (binascii.Error, ValueError, CanonicalizationError):
        return Check(name, False, "the co-signature is malformed")
    root = issuing_root(cert, roots_der)
    if root is None:
        return Check(name, False, "the SM2 certificate is not issued by a trusted root")
    spki = certificate_spki(cert)
    if spki is None or not sm2.verify(spki, message, value):
        return Check(name, False, "the SM2 co-signature does not verify: the statement was "
                     "changed or not signed by this key")
    records = statement.get("records")
    count = len(records) if isinstance(records, list) else 0
    return Check(name, True, f"SM2 co-signature verifies over {count} record(s) "
                 f"(certificate issued by the platform root {root})")
