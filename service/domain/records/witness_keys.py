"""Witness keys (R7, R8): a witness's public key, registered by the lab, signs the
electronic seals and witness records of that institution; the record carries the key and
the witness's identity as registered, never as the request claims."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from stdnum.cn import ric

from service.clock import rfc3339, utc_now
from service.domain import seals
from service.domain.evidence import new_record_id
from service.domain.masking import mask_id_number  # the one ID-masking rule (R19)
from service.domain.records.inputs import WitnessKeyIn
from service.errors import Conflict, Forbidden, Invalid, NotFound
from service.storage.models import WitnessKey
from verifier import sm2
from verifier.errors import CanonicalizationError


def register_witness_key(session: Session, institution: str, data: WitnessKeyIn) -> WitnessKey:
    """Register a witness's public key (caller commits); 409 if already registered."""
    if not ric.is_valid(data.witness.id_number):
        raise Invalid(
            "id_number_invalid", "witness.id_number is not a valid resident ID number"
        )
    parsed = seals.parse_public_key(data.public_key, data.algorithm)
    if data.distinguishing_id is not None and parsed.algorithm != "sm2":
        raise Invalid("witness_key_invalid", "only an SM2 key has a distinguishing_id")
    existing = session.scalar(
        select(WitnessKey.key_id).where(
            WitnessKey.institution == institution, WitnessKey.fingerprint == parsed.fingerprint
        )
    )
    if existing is not None:
        raise Conflict(
            "witness_key_exists", f"this key is registered as {existing}", key_id=existing
        )
    key = WitnessKey(
        key_id=new_record_id(),
        institution=institution,
        algorithm=parsed.algorithm,
        public_key=parsed.der,
        fingerprint=parsed.fingerprint,
        distinguishing_id=data.distinguishing_id,
        witness_name=data.witness.name,
        witness_id_number=data.witness.id_number.upper(),
        witness_unit=data.witness.unit,
        created_at=utc_now(),
    )
    session.add(key)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("witness_key_exists", "this key is already registered") from exc
    return key


def own_witness_key(session: Session, key_id: str, institution: str) -> WitnessKey:
    """The institution's witness key: 404 `witness_key_not_found`, 403 if another's."""
    key = session.get(WitnessKey, key_id) if len(key_id) <= 26 else None
    if key is None:
        raise NotFound("witness_key_not_found", f"no witness key {key_id}")
    if key.institution != institution:
        raise Forbidden("forbidden", "this witness key belongs to another institution")
    return key


def signing_witness_key(session: Session, key_id: str, institution: str) -> WitnessKey:
    """The key a new seal or witness record names: the institution's, not revoked (422
    `witness_key_revoked`)."""
    key = own_witness_key(session, key_id, institution)
    if key.revoked_at is not None:
        raise Invalid("witness_key_revoked", f"witness key {key_id} is revoked")
    return key


def revoke_witness_key(session: Session, key_id: str, institution: str) -> WitnessKey:
    """Revoke the key (it signs nothing new; what it signed stays verifiable)."""
    key = own_witness_key(session, key_id, institution)
    if key.revoked_at is None:
        key.revoked_at = utc_now()
    return key


def key_json(key: WitnessKey) -> dict[str, Any]:
    """The key as a seal or witness record carries it (an SM2 key's distinguishing ID
    only when it is not the default, so every other record is as before)."""
    out = {
        "key_id": key.key_id,
        "algorithm": key.algorithm,
        "public_key": seals.ParsedKey(key.algorithm, key.public_key).b64,
        "fingerprint": key.fingerprint,
    }
    if key.distinguishing_id is not None:
        out["distinguishing_id"] = key.distinguishing_id
    return out


def witness_identity(key: WitnessKey) -> dict[str, Any]:
    """Who the witness is, as registered with the key."""
    out: dict[str, Any] = {"name": key.witness_name, "id_number": key.witness_id_number}
    if key.witness_unit:
        out["unit"] = key.witness_unit
    return out


def witness_key_json(key: WitnessKey, *, mask: bool = True) -> dict[str, Any]:
    """The answer of the witness-key routes (ID number masked unless `mask=False`)."""
    id_number = key.witness_id_number
    return {
        **key_json(key),
        "witness": {
            "name": key.witness_name,
            "id_number": mask_id_number(id_number) if mask else id_number,
            "unit": key.witness_unit,
        },
        "created_at": rfc3339(key.created_at),
        "revoked": key.revoked_at is not None,
    }


def check_witness_signature(
    key: WitnessKey, payload: Mapping[str, Any], sig_text: str, code: str
) -> None:
    """422 `code` unless `sig_text` is the key's signature over the canonical payload."""
    sig = seals.decode_signature(sig_text)
    try:
        message = seals.signed_bytes(payload)
    except CanonicalizationError as exc:
        raise Invalid(code, f"the signed fields cannot be canonicalized: {exc}") from exc
    distid = (key.distinguishing_id or sm2.DEFAULT_ID.decode()).encode()
    if sig is None or not seals.verify_signature(
        key.algorithm, key.public_key, message, sig, distid
    ):
        raise Invalid(
            code, "the signature does not verify with the witness's registered key"
        )
