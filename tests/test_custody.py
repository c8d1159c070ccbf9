"""verifier.custody: a report's history and the warnings its records alone show (§7.1-§7.3)."""

from __future__ import annotations

from typing import Any

from verifier import custody
from verifier.merkle import record_leaf_hash


class World:
    """Records of one report, linked by leaf hash like the service writes them."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.n = 0

    def add(self, type_: str, parents: list[dict[str, Any]] = (), **body: Any) -> dict[str, Any]:
        self.n += 1
        record = {
            "type": type_, "v": 1, "id": f"01REC{self.n:021d}",
            "institution": "91440300MA5EXXXXXX", "created_at": f"2026-11-22T10:{self.n:02d}:00Z",
            "parents": [self.leaf(p) for p in parents], "files": [], "body": body,
        }
        self.records[self.leaf(record)] = record
        return record

    @staticmethod
    def leaf(record: dict[str, Any]) -> str:
        return record_leaf_hash(record).hex()

    def report(self, cites: list[dict[str, Any]], samples: list[dict[str, Any]],
               ) -> dict[str, dict[str, Any]]:
        """Issue + metadata report records, the metadata's history written as the platform
        does: every record (but reports) with the sample among its ancestors."""
        issued = self.add("report", [], event="issued", code="C1", history={})
        history = {self.leaf(s): sorted(self._descendants(self.leaf(s))) for s in samples}
        meta = self.add("report", [issued, *cites], event="metadata", code="C1", history=history)
        return {self.leaf(issued): issued, self.leaf(meta): meta}

    def _descendants(self, leaf: str) -> set[str]:
        out: set[str] = set()
        frontier = {leaf}
        while frontier:
            nxt = {k for k, r in self.records.items() if set(r["parents"]) & frontier
                   and r["type"] != "report"} - out
            out |= nxt
            frontier = nxt
        return out


def _chain(w: World, **sample_body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    commission = w.add("commission", [], commission_no="WT-1")
    sample = w.add("sample", [commission], sample_code="YP-1", **sample_body)
    return commission, sample


def codes(warnings: list[custody.EvidenceWarning]) -> list[str]:
    return [x.code for x in warnings]


def test_complete_custody_has_no_warning() -> None:
    w = World()
    _, sample = _chain(w)
    seal = w.add("seal", [sample], sample_code="YP-1")
    w.add("witness", [sample])
    w.add("receipt", [seal], seal_check={"result": "pass"})
    test = w.add("test_record", [sample], test_item="抗压强度")
    reports = w.report([sample, test], [sample])
    assert custody.evidence_warnings(reports, w.records) == []
    assert custody.missing_history(reports.values(), w.records) == []


def test_each_missing_custody_step_is_named() -> None:
    w = World()
    _, sample = _chain(w)
    test = w.add("test_record", [sample], test_item="抗压强度")
    reports = w.report([sample, test], [sample])
    found = custody.evidence_warnings(reports, w.records)
    assert codes(found) == [
        "custody_seal_missing", "custody_witness_missing", "custody_receipt_missing"
    ]
    assert all(x.record_id == sample["id"] for x in found)
    assert "YP-1" in found[0].detail


def test_not_under_witness_needs_no_custody_records() -> None:
    for on in ("sample", "commission"):
        w = World()
        commission = w.add("commission", [], **({"under_witness": False} if on == "commission"
                                                  else {}))
        sample = w.add("sample", [commission], sample_code="YP-1",
                       **({"under_witness": False} if on == "sample" else {}))
        test = w.add("test_record", [sample], test_item="抗压强度")
        assert custody.evidence_warnings(w.report([sample, test], [sample]), w.records) == []


def test_a_failed_seal_check_is_a_warning_on_the_receipt() -> None:
    w = World()
    _, sample = _chain(w)
    seal = w.add("seal", [sample])
    w.add("witness", [sample])
    receipt = w.add("receipt", [seal], seal_check={"result": "fail", "failed": ["seal_intact"]})
    test = w.add("test_record", [sample], test_item="抗压强度")
    found = custody.evidence_warnings(w.report([sample, test], [sample]), w.records)
    assert [(x.code, x.record_id) for x in found] == [("seal_check_failed", receipt["id"])]


def test_the_cherry_pick_shows_the_uncited_test_record() -> None:
    w = World()
    _, sample = _chain(w, under_witness=False)
    failing = w.add("test_record", [sample], test_item="抗压强度", results={"MPa": 18})
    passing = w.add("test_record", [sample], test_item="抗压强度", results={"MPa": 36},
                    retest_reason="复检")
    found = custody.evidence_warnings(w.report([sample, passing], [sample]), w.records)
    assert [(x.code, x.record_id) for x in found] == [("test_record_uncited", failing["id"])]


def test_a_cited_correction_covers_every_version_it_corrects() -> None:
    w = World()
    _, sample = _chain(w, under_witness=False)
    v1 = w.add("test_record", [sample], test_item="抗压强度")
    v2 = w.add("test_record", [sample, v1], test_item="抗压强度", corrects=v1["id"])
    v3 = w.add("test_record", [sample, v2], test_item="抗压强度", corrects=v2["id"])
    assert custody.evidence_warnings(w.report([sample, v3], [sample]), w.records) == []
    # citing the middle version leaves the newest one uncited
    found = custody.evidence_warnings(w.report([sample, v2], [sample]), w.records)
    assert [(x.code, x.record_id) for x in found] == [("test_record_uncited", v3["id"])]


def test_only_the_latest_metadata_counts_as_cited() -> None:
    w = World()
    _, sample = _chain(w, under_witness=False)
    a = w.add("test_record", [sample], test_item="A")
    b = w.add("test_record", [sample], test_item="B", retest_reason="复检")
    first = w.report([sample, a, b], [sample])
    meta1 = next(r for r in first.values() if r["body"]["event"] == "metadata")
    history = meta1["body"]["history"]
    meta2 = w.add("report", [meta1, sample, b], event="metadata", code="C1", history=history)
    reports = {**first, w.leaf(meta2): meta2}
    found = custody.evidence_warnings(reports, w.records)
    assert [(x.code, x.record_id) for x in found] == [("test_record_uncited", a["id"])]


def test_missing_history_names_what_is_left_out() -> None:
    w = World()
    _, sample = _chain(w, under_witness=False)
    hidden = w.add("test_record", [sample], test_item="抗压强度")
    shown = w.add("test_record", [sample], test_item="抗压强度", retest_reason="复检")
    reports = w.report([sample, shown], [sample])
    without = {k: v for k, v in w.records.items() if v is not hidden}
    assert custody.missing_history(reports.values(), without) == [
        (w.leaf(sample), w.leaf(hidden))
    ]
    assert custody.missing_history(reports.values(), w.records) == []
    incomplete = custody.INCOMPLETE_CODES
    assert "test_record_uncited" not in incomplete and "seal_check_failed" in incomplete
