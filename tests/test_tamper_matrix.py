"""Tamper matrix: every record type edited in the database, every file swapped in the blob
store, a record of an anchored batch deleted, a batch's row deleted. Each time both the
public page/JSON (the running service) and `jianzheng-verify` on a freshly downloaded bundle
must name what was touched.

One world per module: the service as its own process, the anchoring worker as another
(started once the chain is posted, so the chain lands in batch 1 and the sealed PDF, posted
afterwards, in batch 2), then stopped so nothing moves while rows are edited.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from service.anchoring.chaininfo import ChainInfo
from service.client import JianzhengClient
from tests.anchoring_support import wait_for
from tests.fixtures.chain import DevChain, new_chain
from tests.public_kit import make_pdf, privacy_findings
from tests.story_support import (
    PUBLIC_RESPONSES,
    ServiceProcess,
    Story,
    build_story,
    fetch_bundle,
)
from verifier.canonical import canonicalize
from verifier.cli import main as verify_main

pytestmark = pytest.mark.chain

#: (story key, record type) of every record in the story.
RECORDS = [
    ("project", "project"), ("contract", "contract"), ("commission", "commission"),
    ("sample", "sample"), ("media", "media"), ("seal", "seal"), ("witness", "witness"),
    ("receipt", "receipt"), ("test_record", "test_record"), ("report_issue", "report"),
    ("report_metadata", "report"), ("report_pdf", "report"),
]
#: (story key, file role) of every file the story's records name.
FILES = [
    ("contract", "contract_pdf"), ("media", None), ("report_pdf", "signed_pdf"),
    ("report_pdf", "original_pdf"),
]


@dataclass
class World:
    service: ServiceProcess
    chain: ChainInfo
    auditor: JianzhengClient
    story: Story
    tmp: Path

    def sql(self, query: str, **params: Any) -> Any:
        assert self.service.state is not None
        with self.service.state.engine.begin() as conn:
            return conn.execute(text(query), params)

    def verify(self, name: str) -> tuple[int, dict[str, Any]]:
        """Download the bundle now and run the CLI on it (pinned); (exit code, JSON report)."""
        path = self.tmp / f"{name}.zip"
        path.write_bytes(fetch_bundle(self.auditor, self.story.code, timeout=10))
        report = self.tmp / f"{name}.json"
        code = verify_main([str(path), "--rpc", self.chain.rpc_url, "--registry",
                            self.chain.registry, "--chain-id", str(self.chain.chain_id),
                            "--json", str(report)])
        doc: dict[str, Any] = json.loads(report.read_text("utf-8"))
        return code, doc

    def page(self) -> tuple[dict[str, Any], str]:
        data = self.service.public_json(self.story.code)
        html = self.service.public_get(f"/v/{self.story.code}").text
        return data, html


def failures(doc: dict[str, Any]) -> list[tuple[str, str | None, str | None, str]]:
    return [(c["name"], c["record_type"], c["record_id"], c["detail"])
            for c in doc["results"][0]["checks"] if c["status"] == "FAIL"]


@pytest.fixture(scope="module")
def world(hardhat: DevChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("tamper")
    chain = new_chain(hardhat)
    service = ServiceProcess(tmp / "var", chain, hardhat.service_key, worker_in_serve=False)
    PUBLIC_RESPONSES.clear()
    try:
        lab = service.add_lab(62)
        auditor_account = service.add_auditor()
        service.start()
        lab_client = service.client(lab)
        auditor = service.client(auditor_account)
        story = build_story(lab_client, "TM1", seal=False)
        r = auditor.get(f"/api/v1/audit/reports/{story.code}/bundle")
        assert r.status_code == 202 and r.json()["status"] == "pending", r.text
        assert {p["record_id"] for p in r.json()["pending"]} >= set(story.ids.values())
        assert r.headers["Retry-After"]
        service.start_worker()
        fetch_bundle(auditor, story.code)  # batch 1: the whole chain
        r = lab_client.put(f"/api/v1/reports/{story.code}/pdf", content=story.pdf,
                           content_type="application/pdf")
        assert r.status_code == 200, r.text
        story.sealed = r.json()
        story.ids["report_pdf"] = story.sealed["record_id"]
        fetch_bundle(auditor, story.code)  # batch 2: the sealed PDF
        service.stop_worker()
        w = World(service, chain, auditor, story, tmp)
        wait_for(lambda: w.page()[0]["status"] == "genuine", 30, "genuine page")
        yield w
    finally:
        service.close()


def test_untouched_world_verifies(world: World) -> None:
    code, doc = world.verify("clean")
    assert code == 0, failures(doc)
    # the witness record hangs off the sample (a child of the report's ancestry, not an
    # ancestor): attached evidence, a PASS line naming it, no ancestry warning
    checks = doc["results"][0]["checks"]
    assert [c for c in checks if c["name"] == "ancestry" and c["status"] != "PASS"] == []
    attached = {c["record_id"] for c in checks if c["name"] == "ancestry"
                and c["detail"].startswith("attached evidence")}
    assert world.story.ids["witness"] in attached
    seqs = world.sql("SELECT seq FROM batches ORDER BY seq").scalars().all()
    assert seqs == [1, 2]


@pytest.mark.parametrize(("key", "rtype"), RECORDS, ids=[k for k, _ in RECORDS])
def test_edited_row_is_named(world: World, key: str, rtype: str) -> None:
    rid = world.story.ids[key]
    original = bytes(world.sql("SELECT canonical FROM records WHERE id = :id",
                               id=rid).scalar_one())
    obj = json.loads(original)
    obj["body"]["note"] = "后补修改"  # a quiet edit: still valid JSON, still the same record
    world.sql("UPDATE records SET canonical = :c WHERE id = :id", c=canonicalize(obj), id=rid)
    try:
        data, html = world.page()
        assert data["status"] == "tampered", data["problem"]
        assert data["problem"]["record_id"] == rid and data["problem"]["type"] == rtype
        assert 'data-status="tampered"' in html and "数据异常" in html
        code, doc = world.verify(f"edit-{key}")
        assert code == 1
        assert [(n, t, i) for n, t, i, _ in failures(doc)] == [("record_hash", rtype, rid)]
    finally:
        world.sql("UPDATE records SET canonical = :c WHERE id = :id", c=original, id=rid)
    assert world.page()[0]["status"] == "genuine"


@pytest.mark.parametrize(("key", "role"), FILES, ids=[f"{k}-{r}" for k, r in FILES])
def test_swapped_file_is_named(world: World, key: str, role: str | None) -> None:
    rid = world.story.ids[key]
    query = "SELECT sha256 FROM record_files WHERE record_id = :id"
    sha = world.sql(query + (" AND role = :role" if role else ""), id=rid,
                    role=role).scalars().first()
    assert sha
    assert world.service.state is not None
    path = world.service.state.blobs.path(sha)
    original = path.read_bytes()
    swapped = make_pdf(1, "伪造文件") if original.startswith(b"%PDF") else original + b"x"
    path.write_bytes(swapped)
    try:
        data, html = world.page()
        assert data["status"] == "tampered", data
        assert data["problem"]["record_id"] == rid
        assert 'data-status="tampered"' in html
        code, doc = world.verify(f"swap-{key}-{role}")
        assert code == 1
        named = {(n, t, i) for n, t, i, _ in failures(doc)}
        rtype = dict(RECORDS)[key]
        assert ("record_files", rtype, rid) in named
        assert ("file_hash", None, None) in named
        if role == "signed_pdf":
            assert ("sealed_pdf", "report", rid) in named
        assert {i for _, _, i in named} <= {rid, None}
    finally:
        path.write_bytes(original)
    assert world.page()[0]["status"] == "genuine"


def _delete_record(world: World, rid: str) -> dict[str, list[dict[str, Any]]]:
    """Delete a record and every row that names it by id; returns the rows for restoring."""
    saved: dict[str, list[dict[str, Any]]] = {}
    for table, where in [
        ("record_parents", "child_id = :id OR parent_id = :id"),
        ("record_files", "record_id = :id"),
        ("record_flags", "record_id = :id"),
        ("sample_test_items", "record_id = :id OR sample_id = :id"),
        ("outbox", "record_id = :id"),
        ("records", "id = :id"),
    ]:
        rows = world.sql(f"SELECT * FROM {table} WHERE {where}", id=rid).mappings().all()
        saved[table] = [dict(r) for r in rows]
        world.sql(f"DELETE FROM {table} WHERE {where}", id=rid)
    return saved


def _restore(world: World, saved: dict[str, list[dict[str, Any]]]) -> None:
    for table in ["records", "outbox", "record_flags", "sample_test_items", "record_files",
                  "record_parents"]:
        for row in saved.get(table, []):
            cols = ", ".join(row)
            world.sql(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(':' + c for c in row)})",
                      **row)


def test_deleted_record_is_found_from_the_batch_sequence(world: World) -> None:
    rid = world.story.ids["test_record"]
    leaf = world.sql("SELECT leaf_hash FROM records WHERE id = :id", id=rid).scalar_one()
    size = world.sql("SELECT size FROM batches WHERE seq = 1").scalar_one()
    saved = _delete_record(world, rid)
    try:
        data, html = world.page()
        assert data["status"] == "tampered" and 'data-status="tampered"' in html
        code, doc = world.verify("delete-record")
        assert code == 1
        fails = failures(doc)
        # the children that name the deleted record as a parent ...
        parent_fails = {(t, i) for n, t, i, d in fails if n == "parent_links" and leaf in d}
        assert parent_fails == {("report", world.story.ids["report_metadata"])}
        # ... and the chain: batch 1 was anchored with one leaf more than the database holds
        seq_fails = [d for n, _, _, d in fails if n == "batch_sequence"]
        assert len(seq_fails) == 1, fails
        assert ("batch 1 (seq 1 of the chain's 2) was anchored" in seq_fails[0]
                and f"with {size} leaves" in seq_fails[0]
                and f"now holds {size - 1} leaves" in seq_fails[0]
                and "1 leaf/leaves of this anchored batch were deleted" in seq_fails[0])
    finally:
        _restore(world, saved)
    code, doc = world.verify("delete-record-restored")
    assert code == 0, failures(doc)


def test_deleted_batch_row_is_not_mistaken_for_pending(world: World) -> None:
    """Batch 1's row gone: the service cannot prove its records and must not call them
    pending: the page says 数据异常 naming the first step of that batch; the CLI names each
    one and reads from the chain that batch 1 was anchored."""
    row = dict(world.sql("SELECT * FROM batches WHERE seq = 1").mappings().one())
    assert world.service.state is not None
    raw = world.service.state.engine.raw_connection()  # as someone with raw database access:
    try:
        raw.execute("PRAGMA foreign_keys = OFF")  # as before: only the batch row goes
        raw.execute("DELETE FROM batches WHERE seq = 1")
        raw.commit()
        raw.execute("PRAGMA foreign_keys = ON")
    finally:
        raw.close()
    try:
        data, html = world.page()
        assert data["status"] == "tampered", data["status"]
        ids = world.story.ids
        in_batch_1 = set(ids.values()) - {ids["report_pdf"]}
        problem = data["problem"]
        assert (problem["record_id"], problem["type"]) == (ids["project"], "project")
        assert problem["step"]["zh"] == "工程项目"
        assert "batch 1 is missing from the database" in problem["detail"]["en"]
        assert "批次 1 已从数据库中删除" in problem["detail"]["zh"]
        checks = {s["record_id"]: s["check"] for s in data["chain"]}
        assert {rid for rid, c in checks.items() if c == "failed"} >= in_batch_1
        assert checks[ids["report_pdf"]] == "verified"  # batch 2 is intact
        assert 'data-status="tampered"' in html and "数据异常" in html
        assert 'data-step="project"' in html and "待上链" not in html
        code, doc = world.verify("delete-batch")
        assert code == 1
        fails = failures(doc)
        lost = {i for n, _, i, d in fails if n == "batch_sequence"
                and "its batch 1 is anchored on chain (batchCount 2), so it is not pending"
                in d}
        in_batch_1 = set(world.story.ids.values()) - {world.story.ids["report_pdf"]}
        assert lost == in_batch_1
        assert ("parent_links", "report", world.story.ids["report_pdf"]) in {
            (n, t, i) for n, t, i, _ in fails}
    finally:
        cols = ", ".join(row)
        world.sql(f"INSERT INTO batches ({cols}) VALUES ({', '.join(':' + c for c in row)})",
                  **row)
    assert world.verify("delete-batch-restored")[0] == 0
    assert world.page()[0]["status"] == "genuine"  # the row put back: the view follows


def test_no_public_response_leaks_personal_data(world: World) -> None:
    assert PUBLIC_RESPONSES
    leaks = [(what, found) for what, text_ in PUBLIC_RESPONSES
             if (found := privacy_findings(text_))]
    assert leaks == []
