"""The one code -> status table (service/api/problems.py) covers every code the service raises.

Domain code raises `service.errors` subclasses with a stable code and no HTTP status; this
test reads every such raise in service/ (a literal first argument) plus the codes that are
passed through from elsewhere (signer errors, the auth checks, seal signatures), and fails
if one is missing from STATUS_BY_CODE or mapped to a status that does not fit its kind.
"""

from __future__ import annotations

import ast
from pathlib import Path

import service.errors as errors
from service.api.problems import STATUS_BY_CODE, STATUS_BY_KIND, problem_response, status_of
from signer.errors import PdfRejected

SERVICE = Path(__file__).resolve().parent.parent / "service"

ERROR_CLASSES = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, errors.JianzhengError)
}

#: Codes raised through a variable (checked here by name, so a rename is caught).
PASSED_THROUGH = {
    # service/api/auth.py: the §5.1 refusals
    "auth_missing": errors.AuthFailed,
    "auth_expired": errors.AuthFailed,
    "auth_unknown_key": errors.AuthFailed,
    "auth_bad_signature": errors.AuthFailed,
    "auth_replayed": errors.AuthFailed,
    # signature checks of seals and witness records
    "seal_signature_invalid": errors.Invalid,
    "witness_signature_invalid": errors.Invalid,
    # upload headers
    "upload_offset_invalid": errors.BadRequest,
    "content_length_invalid": errors.BadRequest,
    # request validation
    "malformed_json": errors.Invalid,
    "unknown_field": errors.Invalid,
    "history_not_allowed": errors.Invalid,
    # signer failures while sealing a report
    "key_unavailable": errors.Unavailable,
    "ca_error": errors.Unavailable,
    "timestamp_unavailable": errors.Unavailable,
    "sealing_failed": errors.Unavailable,
    "signer_error": errors.Unavailable,
}


def raised_codes() -> dict[str, set[type[errors.JianzhengError]]]:
    found: dict[str, set[type[errors.JianzhengError]]] = {}
    for path in SERVICE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            cls = ERROR_CLASSES.get(node.func.id)
            if cls is None or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            found.setdefault(str(node.args[0].value), set()).add(cls)
    for code, cls in PASSED_THROUGH.items():
        found.setdefault(code, set()).add(cls)
    for code in PdfRejected.CODES:
        found.setdefault(code, set()).add(
            errors.TooLarge if code == "pdf_too_large" else errors.Invalid
        )
    return found


def test_the_scan_sees_the_raises() -> None:
    codes = raised_codes()
    assert len(codes) > 90
    assert codes["duplicate_sample_code"] == {errors.Conflict}


def test_every_raised_code_has_a_status_of_its_kind() -> None:
    problems = []
    for code, classes in sorted(raised_codes().items()):
        status = STATUS_BY_CODE.get(code)
        if status is None:
            problems.append(f"{code}: not in STATUS_BY_CODE")
            continue
        for cls in classes:
            if STATUS_BY_KIND[cls.kind] != status:
                problems.append(f"{code}: {status} but raised as {cls.__name__}")
    assert problems == []


def test_problem_response_shape_and_headers() -> None:
    exc = errors.Conflict("upload_offset_mismatch", "offset 3, not 5", offset=3)
    resp = problem_response(exc)
    assert resp.status_code == 409
    assert resp.headers["Upload-Offset"] == "3"
    assert resp.media_type == "application/problem+json"
    assert b'"code":"upload_offset_mismatch"' in resp.body
    limited = problem_response(errors.RateLimited("rate_limited", "slow down", retry_after_s=0.2))
    assert limited.headers["Retry-After"] == "1"
    assert problem_response(errors.AuthFailed("auth_expired", "old")).headers[
        "WWW-Authenticate"
    ] == "JZ1-HMAC-SHA256"


def test_unknown_code_falls_back_to_its_kind() -> None:
    assert status_of(errors.NotFound("no_such_code_anywhere", "x")) == 404
