"""`create_record`: one request of `POST /api/v1/{collection}` becomes one evidence record.

The steps every collection shares are here; what differs per record type is its handler
(service/domain/records/handlers.py). Everything is written in the caller's transaction:
the record with its parent links, file references and outbox row (`append_record`), the
handler's facts beside it, the upload it used and its flags; the caller commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from service.clock import utc_now
from service.domain import registry, rules
from service.domain.evidence import append_record, new_record_id
from service.domain.records.flags import store_flags
from service.domain.records.handlers import HANDLERS, Handler, Intake
from service.domain.records.inputs import RecordIn, StoredFile
from service.domain.records.parents import resolve_parents
from service.errors import Invalid
from service.settings import Settings
from service.storage.blobs import BlobStore
from service.storage.models import Record, Upload
from verifier.errors import CanonicalizationError


def create_record(
    session: Session,
    settings: Settings,
    blobs: BlobStore,
    *,
    collection: str,
    institution: str,
    payload: RecordIn,
    file: StoredFile | None = None,
) -> Record:
    """Validate against the chain rules and append the evidence record (caller commits)."""
    handler: Handler[Any] = HANDLERS[collection]
    if not isinstance(payload, handler.model):  # pragma: no cover - the routes pair them
        raise TypeError(f"{collection} takes a {handler.model.__name__}")
    now = utc_now()
    parents = resolve_parents(session, payload.parents, institution, handler.record_type)
    intake = Intake(session, settings, blobs, institution, now, parents)
    handler.check(intake, payload)
    file, upload = handler.take_file(intake, payload, file)
    derived = handler.derive(intake, payload, file)
    body = derived.body
    if derived.flags is not None:
        body["flags"] = rules.flags_json(derived.flags)
    try:
        record = append_record(
            session,
            type=handler.record_type,
            institution=institution,
            body=body,
            parents=[*parents, *derived.extra_parents],
            files=derived.files,
            record_id=new_record_id(),
            created_at=now,
        )
    except CanonicalizationError as exc:
        raise Invalid("not_canonicalizable", str(exc)) from exc
    handler.after_insert(intake, payload, record)
    if upload is not None:
        _link_upload(session, upload, record.id)
    store_flags(session, record, institution, derived.flags or (), now)
    registry.notify_warnings(session, record, institution, derived.flags or ())
    return record


def _link_upload(session: Session, upload: Upload, record_id: str) -> None:
    """The upload is now this record's file."""
    session.execute(
        update(Upload)
        .where(Upload.id == upload.id)
        .values(record_id=record_id)
        .execution_options(synchronize_session=False)
    )
