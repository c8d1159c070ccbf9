"""PAdES signing of a prepared incremental update (pyHanko).

Baseline levels: ``B-B`` (signature only), ``B-T`` (plus an RFC 3161 signature time-stamp,
the default), ``B-LT`` (plus the validation data -- certificates and CRLs -- in the
document security store). The DSS is written into the *same* revision as the signature,
so every level yields exactly one incremental update and a verifier can treat any later
update as a modification.
"""

from __future__ import annotations

import io
import re
from typing import Literal, get_args

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import DSSContentSettings, SigDSSPlacementPreference
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator import ValidationContext

from .errors import SealingError
from .keys import KeySource, run_sync

Level = Literal["B-B", "B-T", "B-LT"]
LEVELS: tuple[str, ...] = get_args(Level)
DEFAULT_LEVEL: Level = "B-T"
DIGEST_ALGORITHM = "sha256"


def signature_metadata(
    field_name: str,
    level: Level,
    *,
    ltv_context: ValidationContext | None = None,
    reason: str | None = None,
    location: str | None = None,
) -> signers.PdfSignatureMetadata:
    if level not in LEVELS:
        raise SealingError(f"unknown PAdES level {level!r}; use one of {', '.join(LEVELS)}")
    lt = level == "B-LT"
    if lt and ltv_context is None:
        raise SealingError("B-LT needs a validation context with the CA's CRLs")
    return signers.PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm=DIGEST_ALGORITHM,
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location,
        embed_validation_info=lt,
        validation_context=ltv_context if lt else None,
        dss_settings=DSSContentSettings(
            placement=SigDSSPlacementPreference.TOGETHER_WITH_SIGNATURE, include_vri=False
        ),
    )


def sign_writer(
    writer: IncrementalPdfFileWriter,
    key_source: KeySource,
    meta: signers.PdfSignatureMetadata,
    *,
    level: Level,
    timestamper: TimeStamper | None,
) -> bytes:
    """Sign everything staged in ``writer`` as one incremental update; returns the file."""
    if level != "B-B" and timestamper is None:
        raise SealingError(f"PAdES {level} needs a time-stamp authority")
    ts = timestamper if level != "B-B" else None
    pdf_signer = signers.PdfSigner(meta, key_source.signer, timestamper=ts)
    # pyHanko sizes the signature container with a complete dry-run signature (half the
    # CMS work). The size only depends on key, level and TSA, so remember the space that
    # pyHanko reserved the first time and reuse it.
    cache_key = (level, ts, meta.embed_validation_info)
    reserved = key_source.reservations.get(cache_key)
    out = io.BytesIO()
    with key_source.lock:
        try:
            run_sync(pdf_signer.async_sign_pdf(writer, output=out, bytes_reserved=reserved))
        except SigningError:
            if reserved is None:
                raise
            # the reservation was too small (e.g. the TSA's certificate chain grew)
            key_source.reservations.pop(cache_key, None)
            raise
    data = out.getvalue()
    if reserved is None:
        hole = _contents_hole(data)
        if hole is not None:
            key_source.reservations[cache_key] = hole
    return data


_BYTE_RANGE_RE = re.compile(rb"/ByteRange\s*\[\s*0\s+(\d+)\s+(\d+)\s+\d+\s*\]")


def _contents_hole(data: bytes) -> int | None:
    """Hex digits reserved for /Contents in the last signature (the ByteRange gap)."""
    matches = list(_BYTE_RANGE_RE.finditer(data, max(0, len(data) - 1_000_000)))
    if not matches:
        return None
    m = matches[-1]
    hole = int(m.group(2)) - int(m.group(1)) - 2  # minus the angle brackets
    return hole if hole > 0 and hole % 2 == 0 else None
