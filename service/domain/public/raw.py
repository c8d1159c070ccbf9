"""The raw data of a report's test record as the public page offers it (std 4.1.2: the
scan shows the whole process data): inline JSON, or the data file it names, checked
against its SHA-256."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from service.domain.public.checks import safe_obj
from service.domain.public.views import ReportViews
from service.domain.signing import read_verified_blob
from service.errors import NotFound
from service.storage.blobs import BlobStore


@dataclass(frozen=True)
class RawData:
    content: bytes
    media_type: str
    suffix: str


def raw_data_of(views: ReportViews, blobs: BlobStore, code: str, record_id: str) -> RawData:
    """The raw data of test record `record_id` of canonical `code`'s cached, checked view."""
    view = views.last_view(code)  # the caller has just built or checked it
    record = view.checked.records.get(record_id) if view and view.checked else None
    body = safe_obj(record.canonical).get("body", {}) if record is not None else {}
    if record is None or record.type != "test_record" or not isinstance(body, dict):
        raise NotFound("record_not_found", "no such test record in this report's chain")
    if "raw_data" in body:
        return RawData(orjson.dumps(body["raw_data"]), "application/json", "json")
    sha = body.get("raw_data_file")
    if not isinstance(sha, str):
        raise NotFound("record_not_found", "this test record has no raw data")
    media_type = "application/octet-stream"
    for parent in view.checked.records.values() if view and view.checked else ():
        if parent.type != "media":
            continue
        for entry in safe_obj(parent.canonical).get("files", []):
            if isinstance(entry, dict) and entry.get("sha256") == sha:
                media_type = str(entry.get("media_type") or media_type)
    return RawData(read_verified_blob(blobs, sha), media_type, "bin")
