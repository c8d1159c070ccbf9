"""Which problem codes each route can answer, and what each code means, for the OpenAPI
document (every status a route can give belongs in its entry) and docs/errors.md.

`problem_codes(method, path, ...)` is the list for one operation: the codes every signed
(or public) route can give, those of a route with a body or an `Idempotency-Key`, and the
route's own (`ROUTE_PROBLEMS`). Statuses come from the one table, `STATUS_BY_CODE`.
tests/test_zz_documented_answers.py checks every answer the test suite saw against it.
"""

from __future__ import annotations

#: What a code means, for a lab developer reading the document.
MEANING: dict[str, str] = {
    "already_corrected": "the test record was corrected already; correct the latest version",
    "already_sealed": "the code already has a signed PDF (a different PDF was sent)",
    "already_voided": "the report number is voided already",
    "approver_out_of_scope": "a cited test item lies outside the approver's signing scope",
    "approver_unregistered": "the approver is not one the agency registered for the lab",
    "out_of_scope": "a cited (or, in a code request, named) test item lies outside the lab's "
    "registered qualification (超资质)",
    "qualification_dates_invalid": "a qualification's valid_from is after its valid_until",
    "qualification_expired": "a cited (or named) test item is covered only by a qualification "
    "not valid today",
    "auth_bad_signature": "the signature does not match the request",
    "auth_expired": "the timestamp is more than 300 s from the server clock",
    "auth_missing": "a signing header is missing or malformed",
    "auth_replayed": "the nonce was used before with this key",
    "auth_unknown_key": "no such key, or the key is revoked, expired or unusable",
    "body_too_large": "the request body exceeds the route's limit",
    "bundle_too_large": "the report's evidence exceeds the bundle limits",
    "ca_error": "the platform CA could not be used; try again",
    "calibration_dates_invalid": "a calibration's valid_from is after its valid_until",
    "chain_unreachable": "the chain could not be reached; try again",
    "conflict": "the request conflicts with the current state",
    "content_length_invalid": "Content-Length is not a non-negative integer",
    "correction_sample_mismatch": "a correction names no sample of the record it corrects",
    "database_unavailable": "the database is unavailable right now; nothing was recorded",
    "date_in_future": "a date lies in the future",
    "duplicate_parent": "a record is named twice in parents",
    "duplicate_report_no": "the report number is registered already this year",
    "duplicate_sample_code": "the sample code is registered already",
    "evidence_unavailable": "the report's evidence can no longer be proven from the database",
    "file_corrupt": "a stored file no longer matches its hash (reported to the operator)",
    "file_empty": "the file part is empty",
    "file_missing": "a stored file is missing (reported to the operator)",
    "file_required": "the record needs a file (a file part or upload_id)",
    "file_twice": "a file part and upload_id were both given",
    "file_type_invalid": "the file is not of the required type",
    "forbidden": "the key acts outside its institution, region or role",
    "history_not_allowed": "the platform writes a report's history; do not send one",
    "id_number_invalid": "the resident ID number fails its check",
    "idempotency_in_progress": "a request with this Idempotency-Key is still running",
    "idempotency_mismatch": "the Idempotency-Key was used with a different request",
    "image_not_found": "no such image in this report's chain",
    "image_not_in_parents": "an image is named that no media parent holds",
    "image_required": "the record needs a key image among its media parents",
    "image_unreadable": "the file is not a readable image",
    "internal_error": "the service failed to answer; it has been logged",
    "invalid_algorithm": "unknown signing algorithm",
    "invalid_expiry": "the expiry lies in the past",
    "invalid_filter": "a statistics or search filter is not one of the allowed values",
    "invalid_login": "a console login name has 3 to 64 of a-z, 0-9 and . _ - @",
    "invalid_password": "a console password is too short, too long or too repetitive",
    "login_taken": "the console login name belongs to another account",
    "invalid_idempotency_key": "Idempotency-Key must be 1-255 visible ASCII characters",
    "invalid_name": "a name is empty or too long",
    "invalid_parent": "a parent is not allowed here",
    "invalid_reason": "the reason is empty or too long",
    "invalid_region": "not a 6-digit administrative region code",
    "invalid_report_no": "the report number is empty, too long or not printable",
    "invalid_superseded_by": "the successor code is not an open code of the institution",
    "invalid_uscc": "not a valid unified social credit code",
    "invalid_year": "the year is out of range",
    "key_revoked": "the key is revoked already",
    "key_unavailable": "the signing key could not be used; try again",
    "malformed_json": "the body is not valid JSON",
    "malformed_multipart": "the multipart body cannot be parsed",
    "media_type_invalid": "not a media type",
    "method_not_allowed": "the route does not take this method",
    "not_acceptable": "the answer cannot be given in the requested type",
    "not_canonicalizable": "the body has no RFC 8785 canonical form (e.g. a huge number)",
    "not_found": "no such resource",
    "out_of_region": "the agency writes only for labs registered in its region",
    "parent_count_invalid": "too many parents of a type",
    "parent_duplicate": "a parent is listed twice",
    "parent_not_found": "a parent id names no record",
    "parent_required": "a required parent is missing",
    "parent_type_invalid": "a parent is of a type the record cannot derive from",
    "pdf_damaged": "the PDF is damaged",
    "pdf_empty": "the body is empty",
    "pdf_encrypted": "the PDF is encrypted",
    "pdf_invalid": "not a PDF",
    "pdf_not_found": "the report has no signed PDF yet",
    "pdf_too_complex": "the PDF has too many objects",
    "pdf_too_large": "the PDF exceeds the size limit",
    "proposal_decided": "the registry proposal was approved or rejected already",
    "proposal_not_found": "no such registry proposal",
    "project_fields_invalid": "an agency's project names no parents and no registered_project",
    "project_mismatch": "a record does not derive from the code's project",
    "query_ambiguous": "the query repeats a name or holds a raw '+'",
    "rate_limited": "too many requests from this address; retry after Retry-After",
    "record_corrupt": "a stored record no longer parses (reported to the operator)",
    "record_missing": "a record of the report is missing (reported to the operator)",
    "record_not_found": "no such record (or not one of yours)",
    "registered_project_not_found": "no project the agency registered for this lab has that id",
    "replacement_incomplete": "a replacement names both `replaces` and `effective_on`",
    "report_closed": "the report is revoked, voided or superseded",
    "report_metadata_missing": "PUT the report's metadata first",
    "report_revoked": "the report is revoked",
    "report_sealed": "the report is signed; revoke and supersede it instead",
    "report_voided": "the report number was voided",
    "sample_code_mismatch": "a sample code is not the code of the sample parent",
    "seal_signature_invalid": "the seal's signature does not verify with the witness key",
    "sealing_failed": "the report could not be signed; try again",
    "sha256_invalid": "not 64 hex characters",
    "signer_error": "the report could not be signed; try again",
    "signing_scope_invalid": "only an approver has a signing scope",
    "test_record_corrected": "a cited test record was corrected; cite the latest version",
    "test_record_exists": "the sample was tested for this item: correct it or give a retest_reason",
    "test_record_required": "a report cites at least one test record",
    "timestamp_in_future": "a time lies more than 300 s in the future",
    "timestamp_unavailable": "no time-stamp could be obtained; try again",
    "too_many_parents": "too many parents",
    "unauthorized": "not authenticated",
    "unknown_auditor": "no such auditor account",
    "unknown_code": "the platform never issued this code",
    "unknown_field": "the body has a field the route does not take",
    "unknown_institution": "no such institution",
    "unknown_key": "no such key",
    "unknown_parent": "a named record is not a record of yours, or not of the right type",
    "unsupported_media_type": "the body's media type is not the route's",
    "upload_already_used": "the upload is a record's file already",
    "upload_closed": "the upload is complete or expired",
    "upload_expired": "the upload expired; start a new one",
    "upload_hash_mismatch": "the received bytes have another SHA-256",
    "upload_incomplete": "not every byte has arrived (Upload-Offset says how many)",
    "upload_length_exceeded": "the chunk goes past the upload's length",
    "upload_length_invalid": "the upload length is out of range",
    "upload_lost": "the upload's bytes are gone",
    "upload_not_complete": "complete the upload first",
    "upload_not_found": "no such upload (or not one of yours)",
    "upload_offset_invalid": "Upload-Offset is not a non-negative integer",
    "upload_offset_mismatch": "Upload-Offset is not the current offset (in the header)",
    "upload_offset_missing": "the Upload-Offset header is required",
    "validation_error": "a field is invalid (`errors` lists them)",
    "verify_busy": "every slot that checks sent files is busy; retry after Retry-After",
    "witness_key_exists": "the witness key is registered already",
    "witness_key_invalid": "not a usable public key of the algorithm",
    "witness_key_not_found": "no such witness key",
    "witness_key_revoked": "the witness key is revoked",
    "witness_key_verified": "a supervision agency verified this witness key already",
    "witness_signature_invalid": "the witness record's signature does not verify",
}

#: Every signed route (INTERFACE §5.1): the refusals of the signature check, the query
#: rule, a database that is away.
SIGNED = (
    "auth_missing",
    "auth_expired",
    "auth_unknown_key",
    "auth_bad_signature",
    "auth_replayed",
    "forbidden",
    "query_ambiguous",
    "database_unavailable",
)
#: Every public route: its rate limit, a database that is away.
PUBLIC = ("rate_limited", "database_unavailable")
#: A route with parameters or a body FastAPI validates.
VALIDATED = ("validation_error",)
#: A route with a JSON body.
JSON_BODY = ("malformed_json", "unknown_field", "body_too_large")
#: A signed POST/PUT (Idempotency-Key, INTERFACE §5.2).
IDEMPOTENT = ("invalid_idempotency_key", "idempotency_mismatch", "idempotency_in_progress")

#: Codes of each route beyond the common ones, "METHOD /path/template".
_PARENTS = ("parent_not_found", "parent_duplicate", "parent_required", "parent_type_invalid",
            "parent_count_invalid", "too_many_parents", "not_canonicalizable")
_FILE = ("file_required", "file_twice", "file_empty", "file_type_invalid", "upload_not_found",
         "upload_not_complete", "upload_already_used", "upload_lost", "malformed_multipart",
         "unsupported_media_type")
_STORED = ("record_missing", "record_corrupt", "file_missing", "file_corrupt")
_UPLOAD = ("upload_not_found", "upload_expired")

ROUTE_PROBLEMS: dict[str, tuple[str, ...]] = {
    # reports (INTERFACE §2)
    "POST /api/v1/report-codes": ("duplicate_report_no", "invalid_report_no", "unknown_parent",
                                  "report_voided", "out_of_scope", "qualification_expired"),
    "GET /api/v1/reports/{code}": ("unknown_code",),
    "PUT /api/v1/reports/{code}": (
        "unknown_code", "report_revoked", "report_sealed", "report_closed", "report_voided",
        "history_not_allowed", "invalid_parent", "project_mismatch", "duplicate_parent",
        "unknown_parent", "test_record_corrected", "test_record_required",
        "not_canonicalizable", "approver_unregistered", "approver_out_of_scope",
        "out_of_scope", "qualification_expired",
    ),
    "POST /api/v1/reports/{code}/revocation": (
        "unknown_code", "report_revoked", "invalid_superseded_by", "invalid_reason",
        "not_canonicalizable",
    ),
    "POST /api/v1/numbering/voids": ("already_voided", "report_sealed", "invalid_year",
                                     "invalid_report_no", "invalid_reason"),
    "GET /api/v1/audit/numbering": ("invalid_uscc", "unknown_institution"),
    "GET /api/v1/audit/stats": ("invalid_filter",),
    "PUT /api/v1/reports/{code}/pdf": (
        "unknown_code", "report_metadata_missing", "report_closed", "already_sealed",
        "unsupported_media_type", "pdf_empty", "pdf_invalid", "pdf_damaged", "pdf_encrypted",
        "pdf_too_complex", "pdf_too_large", "content_length_invalid", "sealing_failed",
        "signer_error", "key_unavailable", "timestamp_unavailable", "ca_error",
        *_STORED,
    ),
    "GET /api/v1/reports/{code}/pdf": ("unknown_code", "pdf_not_found", "file_missing",
                                       "file_corrupt"),
    "GET /api/v1/reports/{code}/certificate": ("unknown_code", "pdf_not_found",
                                               "evidence_unavailable", *_STORED),
    # records (INTERFACE §1)
    "POST /api/v1/projects": (*_PARENTS, "registered_project_not_found"),
    "POST /api/v1/contracts": (*_PARENTS, *_FILE, "date_in_future"),
    "POST /api/v1/commissions": _PARENTS,
    "POST /api/v1/samples": (*_PARENTS, "duplicate_sample_code"),
    "POST /api/v1/seals": (
        *_PARENTS, "image_not_in_parents", "sample_code_mismatch", "seal_signature_invalid",
        "witness_key_not_found", "witness_key_revoked", "timestamp_in_future",
    ),
    "POST /api/v1/witnesses": (*_PARENTS, "witness_signature_invalid", "witness_key_not_found",
                               "witness_key_revoked", "image_not_in_parents",
                               "timestamp_in_future"),
    "POST /api/v1/receipts": (*_PARENTS, "image_not_in_parents", "timestamp_in_future"),
    "POST /api/v1/test-plans": _PARENTS,
    "POST /api/v1/test-records": (
        *_PARENTS, "already_corrected", "correction_sample_mismatch", "test_record_exists",
        "image_not_in_parents", "image_required", "timestamp_in_future",
    ),
    "POST /api/v1/media": (*_PARENTS, *_FILE, "media_type_invalid", "image_unreadable"),
    "GET /api/v1/records/{record_id}": ("record_not_found", "record_corrupt"),
    "GET /api/v1/records/{record_id}/proof": ("record_not_found", "record_corrupt"),
    "POST /api/v1/witness-keys": ("id_number_invalid", "witness_key_exists",
                                  "witness_key_invalid", "invalid_name", "invalid_algorithm"),
    "GET /api/v1/witness-keys/{key_id}": ("witness_key_not_found",),
    "POST /api/v1/witness-keys/{key_id}/revocation": ("witness_key_not_found",),
    # the supervision agency's register (issue 13, docs/registry.md)
    "POST /api/v1/agency/witnesses": (
        "out_of_region", "unknown_institution", "id_number_invalid", "witness_key_exists",
        "witness_key_invalid", "witness_key_not_found", "replacement_incomplete",
    ),
    "POST /api/v1/agency/witness-keys/{key_id}/verification": (
        "out_of_region", "unknown_institution", "witness_key_not_found", "witness_key_revoked",
        "witness_key_verified", "witness_key_invalid", "replacement_incomplete",
    ),
    "POST /api/v1/agency/projects": (
        "out_of_region", "unknown_institution", "project_fields_invalid",
    ),
    "POST /api/v1/agency/devices": (
        "out_of_region", "unknown_institution", "calibration_dates_invalid",
    ),
    "POST /api/v1/agency/staff": (
        "out_of_region", "unknown_institution", "id_number_invalid", "signing_scope_invalid",
    ),
    "POST /api/v1/agency/qualifications": (
        "out_of_region", "unknown_institution", "qualification_dates_invalid",
    ),
    "POST /api/v1/registry-proposals": (
        "id_number_invalid", "signing_scope_invalid", "calibration_dates_invalid",
        "qualification_dates_invalid",
    ),
    "GET /api/v1/registry-proposals": (),
    "GET /api/v1/agency/registry-proposals": (),
    "POST /api/v1/agency/registry-proposals/{proposal_id}/approval": (
        "proposal_not_found", "proposal_decided", "out_of_region",
    ),
    "POST /api/v1/agency/registry-proposals/{proposal_id}/rejection": (
        "proposal_not_found", "proposal_decided", "out_of_region",
    ),
    "GET /api/v1/audit/registry": (),
    "GET /api/v1/audit/notifications": (),
    "GET /api/v1/audit/registry/expiring": (),
    # uploads (INTERFACE §5.3)
    "POST /api/v1/uploads": ("media_type_invalid", "upload_length_invalid"),
    "HEAD /api/v1/uploads/{upload_id}": _UPLOAD,
    "GET /api/v1/uploads/{upload_id}": _UPLOAD,
    "PATCH /api/v1/uploads/{upload_id}": (
        *_UPLOAD, "upload_closed", "upload_offset_missing", "upload_offset_invalid",
        "upload_offset_mismatch", "upload_length_exceeded", "unsupported_media_type",
        "content_length_invalid", "body_too_large",
    ),
    "POST /api/v1/uploads/{upload_id}/complete": (
        *_UPLOAD, "upload_closed", "upload_incomplete", "upload_hash_mismatch",
        "sha256_invalid", "upload_lost",
    ),
    "GET /api/v1/warnings": ("unknown_code",),
    # audit
    "GET /api/v1/audit/warnings": ("unknown_code", "invalid_region"),
    "GET /api/v1/audit/reports/{code}/bundle": ("unknown_code", "bundle_too_large",
                                                "evidence_unavailable", *_STORED),
    # public (INTERFACE §4)
    "GET /api/v1/public/reports/{code}": ("unknown_code",),
    "GET /api/v1/public/reports/{code}/images/{sha256}": (
        "unknown_code", "image_not_found", "image_unreadable", "file_missing", "file_corrupt",
    ),
    "GET /api/v1/public/reports/{code}/raw/{record_id}": (
        "unknown_code", "record_not_found", "file_missing", "file_corrupt",
    ),
    "GET /api/v1/public/reports/{code}/pdf": ("unknown_code", "pdf_not_found", "file_missing",
                                              "file_corrupt"),
    "GET /api/v1/public/reports/{code}/qr/{payload}": ("unknown_code",),
    "POST /api/v1/public/verify": ("body_too_large", "unsupported_media_type",
                                   "malformed_multipart", "file_empty", "verify_busy"),
    # platform
    "POST /tsa": ("not_found", "unsupported_media_type", "body_too_large"),
    "GET /healthz": ("database_unavailable",),
}


def problem_codes(
    method: str,
    path: str,
    *,
    signed: bool,
    public: bool,
    validated: bool,
    json_body: bool,
) -> list[str]:
    """Every problem code the operation can answer, in a stable order."""
    codes: list[str] = []
    if signed:
        codes += SIGNED
    if public:
        codes += PUBLIC
    if validated:
        codes += VALIDATED
    if json_body:
        codes += JSON_BODY
    if signed and method.lower() in ("post", "put"):
        codes += IDEMPOTENT
    codes += ROUTE_PROBLEMS.get(f"{method.upper()} {path}", ())
    return list(dict.fromkeys(codes))


def errors_markdown() -> str:
    """docs/errors.md: every problem code, its status, its meaning and where it is given
    (scripts/make_errors_doc.py writes it; tests/test_zz_documented_answers.py keeps it
    current)."""
    from service.api.problems import STATUS_BY_CODE

    common = {
        **{c: "every signed route" for c in SIGNED},
        **{c: "every public route" for c in PUBLIC},
        **{c: "every route with parameters or a body" for c in VALIDATED},
        **{c: "every route with a JSON body" for c in JSON_BODY},
        **{c: "every signed POST and PUT" for c in IDEMPOTENT},
    }
    routes: dict[str, list[str]] = {}
    for route, codes in ROUTE_PROBLEMS.items():
        for code in codes:
            routes.setdefault(code, []).append(f"`{route}`")
    lines = [
        "# Error answers",
        "",
        "<!-- Written by scripts/make_errors_doc.py from service/api/answers.py; do not edit. -->",
        "",
        "Every refusal is RFC 9457 problem details (`application/problem+json`) with a stable",
        "`code` (INTERFACE.md §5). Build on `code`, never on `detail`, which is for people and",
        "may change wording. `errors` lists the fields of a `validation_error`. 429 and 503",
        "answers carry `Retry-After` (seconds); anything answered 503 recorded nothing and may",
        "be sent again unchanged (with the same `Idempotency-Key`, a write is done at most",
        "once). 500 answers with a `record_*` or `file_*` code mean stored evidence failed its",
        "own check: the operator is alerted and the answer stays so until it is repaired.",
        "",
        "The OpenAPI document (`/openapi.json`) lists, for every operation, each status it can",
        "give with an example of every code of that status.",
        "",
        "| Status | Code | Meaning | Given by |",
        "|---|---|---|---|",
    ]
    given = set(common) | set(routes)
    for code in sorted(given, key=lambda c: (STATUS_BY_CODE[c], c)):
        where = common.get(code) or ", ".join(routes[code])
        if code in common and code in routes:
            where += ", " + ", ".join(routes[code])
        lines.append(f"| {STATUS_BY_CODE[code]} | `{code}` | {MEANING[code]} | {where} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- OpenAPI answers

SIGNED_PREFIX = "/api/v1/"
PUBLIC_PREFIX = "/api/v1/public/"
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"  # service/api/schemas.py Problem
_JSON = "application/json"
_PROBLEM_JSON = "application/problem+json"


def is_signed_path(path: str) -> bool:
    """Whether calls to `path` are signed (§5.1): all of `/api/v1/` but `/api/v1/public/`."""
    return path.startswith(SIGNED_PREFIX) and not path.startswith(PUBLIC_PREFIX)


def is_public_path(path: str) -> bool:
    return path.startswith(PUBLIC_PREFIX) or path.startswith("/v/")


def example_problem(status: int, code: str) -> dict[str, object]:
    """The example answer of `code` in the OpenAPI document."""
    from http import HTTPStatus

    problem: dict[str, object] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": MEANING[code],
    }
    if code == "validation_error":
        problem["detail"] = "body.report_no: String should have at least 1 character"
        problem["errors"] = [
            {
                "loc": ["body", "report_no"],
                "msg": "String should have at least 1 character",
                "type": "string_too_short",
            }
        ]
    return problem


def problem_responses(
    method: str, path: str, *, validated: bool, json_body: bool
) -> dict[str, dict[str, object]]:
    """FastAPI `responses` entries, by status, for every problem code the operation can
    answer: a description naming each code, the Problem schema, an example of each code,
    and `Retry-After` on 429 and 503 (service/api/routing.py merges them into each route)."""
    from service.api.problems import STATUS_BY_CODE

    codes = problem_codes(
        method,
        path,
        signed=is_signed_path(path),
        public=is_public_path(path),
        validated=validated,
        json_body=json_body,
    )
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    out: dict[str, dict[str, object]] = {}
    for status, group in by_status.items():
        entry: dict[str, object] = {
            "description": "; ".join(f"`{c}`: {MEANING[c]}" for c in group),
            "content": {
                _PROBLEM_JSON: {
                    "schema": {"$ref": PROBLEM_SCHEMA_REF},
                    "examples": {
                        c: {"summary": MEANING[c], "value": example_problem(status, c)}
                        for c in group
                    },
                }
            },
        }
        if status in (429, 503):
            entry["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before trying again",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        out[str(status)] = entry
    return out
