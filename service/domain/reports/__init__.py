"""Report codes and numbering (INTERFACE §4, R4): issuance, a code's lifecycle, numbering.

Every state change is an evidence record written in the caller's transaction next to
the row of `report_codes` / `numbering_voids` it explains:

- `issuance`: a `report` record (body `event: "code_issued"`), parent = the project;
  the hot path (one Core statement; the API's fast path adds the nonce to it) and the
  per-process `IssuanceCache` it reads;
- `lifecycle`: metadata (a `report` record, `event: "metadata"`), revocation (a
  `revocation` record, and the registry's `revoke` through `chain_revocations`), a
  code's state and statuses;
- `numbering`: voids (a `numbering_void` record) and the numbering audit (issued,
  voided, unfinished and missing numbers per series).
"""

from service.domain.reports.issuance import (
    ISSUE_SIGNED_PG,
    MAX_CACHED_PROJECTS,
    MAX_CODE_TEST_ITEMS,
    MAX_ISSUE_ATTEMPTS,
    MAX_REPORT_NO_CHARS,
    IssuanceCache,
    IssuePlan,
    ProjectRef,
    TestItemName,
    check_report_no,
    institution_region,
    issue_code,
    issue_code_signed,
    issue_code_signed_async,
    number_taken,
    plan_issue,
    plan_signed_issue,
    signed_issue_outcome,
)
from service.domain.reports.lifecycle import (
    MAX_REASON_CHARS,
    OPEN_STATUSES,
    REPORT_PARENT_TYPES,
    STATUS_ISSUED,
    STATUS_REPORTED,
    STATUS_REVOKED,
    STATUS_SUPERSEDED,
    STATUS_VOIDED,
    ReportMetadata,
    code_institution,
    code_json,
    load_own_code,
    put_metadata,
    revoke_report,
    verify_url,
)
from service.domain.reports.numbering import (
    DEFAULT_UNFINISHED_AFTER_S,
    MAX_MISSING_LISTED,
    MIN_YEAR,
    SeqNo,
    numbering_audit,
    sequence_of,
    void_number,
)

__all__ = [
    "DEFAULT_UNFINISHED_AFTER_S",
    "ISSUE_SIGNED_PG",
    "MAX_CACHED_PROJECTS",
    "MAX_CODE_TEST_ITEMS",
    "MAX_ISSUE_ATTEMPTS",
    "MAX_MISSING_LISTED",
    "MAX_REASON_CHARS",
    "MAX_REPORT_NO_CHARS",
    "MIN_YEAR",
    "OPEN_STATUSES",
    "REPORT_PARENT_TYPES",
    "STATUS_ISSUED",
    "STATUS_REPORTED",
    "STATUS_REVOKED",
    "STATUS_SUPERSEDED",
    "STATUS_VOIDED",
    "IssuanceCache",
    "IssuePlan",
    "ProjectRef",
    "ReportMetadata",
    "SeqNo",
    "TestItemName",
    "check_report_no",
    "code_institution",
    "code_json",
    "institution_region",
    "issue_code",
    "issue_code_signed",
    "issue_code_signed_async",
    "load_own_code",
    "number_taken",
    "numbering_audit",
    "plan_issue",
    "plan_signed_issue",
    "put_metadata",
    "revoke_report",
    "sequence_of",
    "signed_issue_outcome",
    "verify_url",
    "void_number",
]
