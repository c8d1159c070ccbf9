"""What a report's evidence says about custody, derived from its records alone (§7.1-§7.3).

Pure functions over evidence records (INTERFACE §1 objects) keyed by leaf hash; the bundle
verifier and the service both use them, so an auditor's tool and the public page name the
same warnings for the same records.

- The report's *history* (`body.history` of its report records, written by the platform):
  for each cited sample, the leaf hashes of every record derived from it when the report
  record was made. `missing_history` lists those a set of records lacks: a bundle without
  one hides a record that existed when the report was issued (`history_record_missing`).
- The *warnings* (§7.2) that need nothing but the records:

  - `custody_seal_missing`, `custody_witness_missing`, `custody_receipt_missing`: a cited
    sample taken under witness has no seal / witness record / receipt in its history;
  - `seal_check_failed`: a receipt in a cited sample's history records a failed seal check;
  - `test_record_uncited`: a test record of a cited sample is neither cited by the report
    nor corrected by a cited one.

  A sample is taken under witness (见证取样) unless its record or its commission's has
  `"under_witness": false` in its body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The field of a sample's or commission's body that says it was not taken under witness.
UNDER_WITNESS_FIELD = "under_witness"

CUSTODY_SEAL_MISSING = "custody_seal_missing"
CUSTODY_WITNESS_MISSING = "custody_witness_missing"
CUSTODY_RECEIPT_MISSING = "custody_receipt_missing"
SEAL_CHECK_FAILED = "seal_check_failed"
TEST_RECORD_UNCITED = "test_record_uncited"
HISTORY_RECORD_MISSING = "history_record_missing"

#: Codes whose presence makes the evidence incomplete (`evidence_complete: false`, §7.2).
INCOMPLETE_CODES = frozenset(
    {CUSTODY_SEAL_MISSING, CUSTODY_WITNESS_MISSING, CUSTODY_RECEIPT_MISSING, SEAL_CHECK_FAILED}
)

Record = Mapping[str, Any]


@dataclass(frozen=True)
class EvidenceWarning:
    """One §7.2 warning: its fixed code, the record it is about (if any), a sentence."""

    code: str
    record_id: str | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "record_id": self.record_id, "detail": self.detail}


def _body(record: Record) -> Mapping[str, Any]:
    body = record.get("body")
    return body if isinstance(body, Mapping) else {}


def _parents(record: Record) -> list[str]:
    parents = record.get("parents")
    return [p for p in parents if isinstance(p, str)] if isinstance(parents, list) else []


def history_of(report_records: Iterable[Record]) -> dict[str, list[str]]:
    """The union of the `history` of a report's records: sample leaf -> record leaves."""
    out: dict[str, set[str]] = {}
    for record in report_records:
        history = _body(record).get("history")
        if not isinstance(history, Mapping):
            continue
        for sample, leaves in history.items():
            if isinstance(sample, str) and isinstance(leaves, list):
                out.setdefault(sample, set()).update(x for x in leaves if isinstance(x, str))
    return {sample: sorted(leaves) for sample, leaves in out.items()}


def missing_history(
    report_records: Iterable[Record], records: Mapping[str, Record]
) -> list[tuple[str, str]]:
    """(sample leaf, record leaf) named in the history but absent from `records`."""
    missing = []
    for sample, leaves in history_of(report_records).items():
        if sample not in records:
            missing.append((sample, sample))
        missing.extend((sample, leaf) for leaf in leaves if leaf not in records)
    return missing


def cited(report_records: Mapping[str, Record]) -> set[str]:
    """Leaf hashes the report's latest metadata record cites (report records by leaf hash;
    a newer metadata record names the one before it among its parents)."""
    metadata = {
        leaf: r for leaf, r in report_records.items() if _body(r).get("event") == "metadata"
    }
    superseded = {p for r in metadata.values() for p in _parents(r)}
    latest = [r for leaf, r in metadata.items() if leaf not in superseded]
    return {p for r in latest for p in _parents(r) if p not in report_records}


def under_witness(sample: Record, records: Mapping[str, Record]) -> bool:
    """Whether a sample was taken under witness (见证取样; the default)."""
    if _body(sample).get(UNDER_WITNESS_FIELD) is False:
        return False
    for parent in _parents(sample):
        commission = records.get(parent)
        if commission is not None and commission.get("type") == "commission":
            if _body(commission).get(UNDER_WITNESS_FIELD) is False:
                return False
    return True


def _seal_check_failed(receipt: Record) -> bool:
    check = _body(receipt).get("seal_check")
    return isinstance(check, Mapping) and check.get("result") == "fail"


def _label(record: Record) -> str:
    code = _body(record).get("sample_code")
    return f"样品 {code}" if isinstance(code, str) else f"记录 {record.get('id')}"


def evidence_warnings(
    report_records: Mapping[str, Record], records: Mapping[str, Record]
) -> list[EvidenceWarning]:
    """The warnings of §7.2 that the records alone show, in a stable order.

    `report_records`: the report's own records by leaf hash; `records`: every record at
    hand by leaf hash (the report's ancestry and history)."""
    warnings: list[EvidenceWarning] = []
    history = history_of(report_records.values())
    citations = cited(report_records)
    by_id = {str(r.get("id")): leaf for leaf, r in records.items()}
    for sample_leaf, leaves in sorted(history.items()):
        sample = records.get(sample_leaf)
        if sample is None:
            continue  # missing_history reports it
        present = [(leaf, records[leaf]) for leaf in leaves if leaf in records]
        of_sample = [r for _, r in present]
        types = {r.get("type") for r in of_sample}
        label = _label(sample)
        sample_id = str(sample.get("id"))
        if under_witness(sample, records):
            for type_, code, zh in (
                ("seal", CUSTODY_SEAL_MISSING, "没有电子封志记录"),
                ("witness", CUSTODY_WITNESS_MISSING, "没有见证记录"),
                ("receipt", CUSTODY_RECEIPT_MISSING, "没有收样验封记录"),
            ):
                if type_ not in types:
                    warnings.append(EvidenceWarning(code, sample_id, f"{label} {zh}"))
        for receipt in (r for r in of_sample if r.get("type") == "receipt"):
            if _seal_check_failed(receipt):
                warnings.append(
                    EvidenceWarning(
                        SEAL_CHECK_FAILED, str(receipt.get("id")), f"{label} 收样时验封未通过"
                    )
                )
        warnings += _uncited(present, covered_by(citations, records, by_id), label)
    return warnings


def covered_by(
    citations: Iterable[str], records: Mapping[str, Record], by_id: Mapping[str, str]
) -> set[str]:
    """Leaves of the test records the citations cover: each cited test record and every
    version it corrects, transitively (a cited record correcting X, which corrects Y,
    covers X and Y)."""
    covered: set[str] = set()
    for start in citations:
        leaf = start
        current = records.get(leaf)
        while current is not None and current.get("type") == "test_record" and leaf not in covered:
            covered.add(leaf)
            target = _body(current).get("corrects")
            leaf = by_id.get(target, "") if isinstance(target, str) else ""
            current = records.get(leaf) if leaf else None
    return covered


def _uncited(
    present: Sequence[tuple[str, Record]], covered: set[str], label: str
) -> list[EvidenceWarning]:
    """Test records of a sample that the report neither cites nor supersedes by a cited
    correction."""
    out = []
    for leaf, record in present:
        if record.get("type") != "test_record":
            continue
        if leaf not in covered:
            item = _body(record).get("test_item")
            what = f"检测项目「{item}」" if isinstance(item, str) else "一条检测记录"
            out.append(
                EvidenceWarning(
                    TEST_RECORD_UNCITED,
                    str(record.get("id")),
                    f"{label} 的{what}未被报告引用，也未被所引用的记录更正",
                )
            )
    return out
