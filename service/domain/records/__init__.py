"""Records of the traceable chain (DESIGN.md "The traceable chain"; R7-R13).

project -> contract -> commission -> sample -> {seal, witness, receipt, test_record};
any record may list `media` records (images, video, data files) among its parents.

- `inputs`: the documented input of each `POST /api/v1/{collection}` (ProjectIn ...
  MediaIn, WitnessKeyIn) and the field types they share;
- `parents`: which records a record may derive from (`PARENT_RULES`, `resolve_parents`);
- `handlers`: one handler per collection, registered in `HANDLERS`: its rules and what
  the server derives (witness identity from the registered key, the seal check at
  receipt, late-upload flags), plus the facts kept beside the record;
- `intake`: `create_record`, which runs a collection's handler and appends one evidence
  record whose `parents` are the parents' leaf hashes and whose `files` name stored
  blobs by SHA-256;
- `witness_keys`, `corrections`, `flags`, `queries`: the witness-key register, test-data
  corrections (R10), flags raised on arrival, and reading records back.
"""

from service.domain.nonconforming import record_nonconforming
from service.domain.records.corrections import correction_of
from service.domain.records.flags import flags_of, list_flags
from service.domain.records.handlers import (
    COLLECTIONS,
    HANDLERS,
    MAX_CLOCK_SKEW_S,
    Handler,
    sample_code_taken,
)
from service.domain.records.inputs import (
    CommissionIn,
    ContractIn,
    MediaIn,
    ProjectIn,
    ReceiptIn,
    RecordIn,
    SampleIn,
    SealIn,
    StoredFile,
    TestPlanIn,
    TestRecordIn,
    WitnessActivity,
    WitnessIn,
    WitnessKeyIn,
    parse_rfc3339,
    store_file,
)
from service.domain.records.intake import create_record
from service.domain.records.parents import PARENT_RULES, ParentRule, resolve_parents
from service.domain.records.queries import find_record, record_json, record_summary, record_view
from service.domain.records.witness_keys import (
    own_witness_key,
    register_witness_key,
    revoke_witness_key,
    witness_key_json,
)

__all__ = [
    "COLLECTIONS",
    "HANDLERS",
    "MAX_CLOCK_SKEW_S",
    "PARENT_RULES",
    "CommissionIn",
    "ContractIn",
    "Handler",
    "MediaIn",
    "ParentRule",
    "ProjectIn",
    "ReceiptIn",
    "RecordIn",
    "SampleIn",
    "SealIn",
    "StoredFile",
    "TestPlanIn",
    "TestRecordIn",
    "WitnessActivity",
    "WitnessIn",
    "WitnessKeyIn",
    "correction_of",
    "create_record",
    "find_record",
    "flags_of",
    "list_flags",
    "own_witness_key",
    "parse_rfc3339",
    "record_json",
    "record_nonconforming",
    "record_summary",
    "record_view",
    "register_witness_key",
    "resolve_parents",
    "revoke_witness_key",
    "sample_code_taken",
    "store_file",
    "witness_key_json",
]
