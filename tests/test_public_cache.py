"""The public view's caches notice direct database edits and swapped files.

Every view is answered from a cache only while the evidence change stamp (migration
0004_change_stamp: triggers on the evidence tables), the report code row and the blob
files' stat are as they were. These tests edit rows behind the service's back, as an
insider with database access would, on SQLite and on PostgreSQL (`db_url`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from service.anchoring.worker import AnchorWorker, anchor_until_drained
from service.api.public import TURNS
from service.domain.public import ReportViews
from service.domain.public.verdicts import SIGNATURE_VERDICT_MAX_AGE_S
from service.state import ServiceState
from service.storage.public_sql import HEAD_ROW, STAMP_TRIGGERS, stamp_armed, stamp_guard_sql
from tests.fixtures.chain import DevChain, new_chain
from tests.fixtures.db import state_with_chain
from tests.labkit import add_lab, client_for, make_app
from tests.public_kit import Built, issue_report, make_pdf


def _stamp(engine: Engine) -> int:
    with engine.connect() as conn:
        stamp = conn.execute(text("SELECT counter FROM evidence_stamp WHERE id = 1"))
        return int(stamp.scalar_one())


def _exec(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def test_stamp_moves_on_edits_not_on_inserts_or_anchoring(app_state: ServiceState) -> None:
    engine = app_state.engine
    dialect = engine.dialect.name
    s0 = _stamp(engine)
    # ingest and anchoring, as the service does them: no movement
    _exec(engine, "INSERT INTO records (id, type, institution, created_at, canonical, leaf_hash)"
          " VALUES ('R1', 'project', 'I', '2026-11-22 00:00:00', :c, 'aa'),"
          " ('R2', 'contract', 'I', '2026-11-22 00:00:00', :c, 'bb')", c=b"{}")
    _exec(engine, "INSERT INTO record_parents (child_id, parent_id, position) VALUES ('R2','R1',0)")
    _exec(engine, "INSERT INTO record_files (record_id, role, sha256, size, media_type)"
          " VALUES ('R2', 'contract_pdf', 'cc', 1, 'application/pdf')")
    _exec(engine, "INSERT INTO outbox (seq, record_id, leaf_hash, enqueued_at)"
          " VALUES (1, 'R1', 'aa', 0), (2, 'R2', 'bb', 0)")
    _exec(engine, "INSERT INTO batches (seq, root, size, status, created_at, oldest_enqueued_at,"
          " first_seq, last_seq) VALUES (1, 'dd', 2, 'prepared', 0, 0, 1, 2)")
    _exec(engine, "UPDATE batches SET status = 'sent', tx_hash = '0x1', tx_nonce = 0 WHERE seq = 1")
    _exec(engine, "UPDATE batches SET status = 'anchored', block_number = 7, block_timestamp = 9,"
          " gas_used = 1, anchored_at = 1 WHERE seq = 1")
    _exec(engine, "UPDATE batches SET gas_used = 2 WHERE seq = 1")  # bookkeeping only
    assert _stamp(engine) == s0

    # every edit of evidence moves it
    edits = [
        "UPDATE records SET canonical = :c WHERE id = 'R1'",
        "UPDATE record_files SET size = 2 WHERE record_id = 'R2'",
        "UPDATE record_parents SET position = 1 WHERE child_id = 'R2'",
        "UPDATE outbox SET leaf_hash = 'ee' WHERE seq = 1",
        "UPDATE batches SET last_seq = 1 WHERE seq = 1",  # the batch's range
        "UPDATE batches SET block_number = 8 WHERE seq = 1",  # an anchored fact
        "UPDATE batches SET tx_hash = '0x2' WHERE seq = 1",
        "UPDATE batches SET root = 'ff' WHERE seq = 1",
        "DELETE FROM outbox WHERE seq = 2",
        "DELETE FROM record_files WHERE record_id = 'R2'",
        "DELETE FROM record_parents WHERE child_id = 'R2'",
        "DELETE FROM records WHERE id = 'R2'",
    ]
    for sql in edits:
        before = _stamp(engine)
        _exec(engine, sql, c=b'{"x":1}')
        assert _stamp(engine) > before, sql
    before = _stamp(engine)
    _exec(engine, "DELETE FROM outbox")
    _exec(engine, "DELETE FROM batches WHERE seq = 1")
    assert _stamp(engine) >= before + 2

    # the view trusts the stamp only while every trigger is armed
    assert stamp_armed(dialect, _head_tail(engine))
    name = STAMP_TRIGGERS[dialect][0]
    _exec(engine, f"DROP TRIGGER {name}" + (" ON records" if dialect == "postgresql" else ""))
    assert not stamp_armed(dialect, _head_tail(engine))


def _head_tail(engine: Engine) -> tuple[Any, ...]:
    """A view head with no code row: the stamp and the armed-trigger count."""
    dialect = engine.dialect.name
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT (SELECT counter FROM evidence_stamp WHERE id = 1),"
            f" ({stamp_guard_sql(dialect)})"
        ).one()
    return (*([None] * 13), *row)


class World:
    def __init__(self, state: ServiceState, http: TestClient, built: Built) -> None:
        self.state = state
        self.http = http
        self.built = built

    @property
    def views(self) -> ReportViews:
        views = self.state.views.get()
        assert isinstance(views, ReportViews)
        return views

    def report(self) -> dict[str, Any]:
        r = self.http.get(f"/api/v1/public/reports/{self.built.code}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


@pytest.fixture
def world(hardhat: DevChain, tmp_path: Path, db_url: str) -> Iterator[World]:
    chain = new_chain(hardhat)
    state = state_with_chain(
        tmp_path, db_url, chain,
        public={"rate_limit_per_minute": 0, "base_url": "https://jz.example.cn"},
    )
    app = make_app(state)
    lab = add_lab(state, 8)
    assert lab.institution is not None
    built = issue_report(state, client_for(app, lab), lab.institution, "C1")
    anchor_until_drained(AnchorWorker(state.settings, state.engine, chain))
    assert state.verdict_primer.built, "the signing route stores the signature verdict"
    state.verdict_primer.get().shutdown(wait=True)
    yield World(state, TestClient(app), built)
    stamp = state.views.get().stamp
    if stamp is not None:
        stamp.close()
    state.engine.dispose()


def _assert_tampered(data: dict[str, Any], record_id: str, type_: str, zh: str) -> None:
    assert data["status"] == "tampered", data["status"]
    assert data["problem"]["record_id"] == record_id
    assert data["problem"]["type"] == type_
    assert data["problem"]["step"]["zh"] == zh
    checks = {s["record_id"]: s["check"] for s in data["chain"]}
    assert checks[record_id] == "failed"


@pytest.mark.chain
def test_cached_view_notices_row_edits_and_swapped_files(world: World) -> None:
    views = world.views
    ids = world.built.record_ids
    engine = world.state.engine

    assert views.signatures_primed == 1  # by the sealing route
    first = world.report()
    assert first["status"] == "genuine" and first["signature"]["ok"] is True
    assert views.signature_validations == 0  # the sealing step's stored verdict was used
    hits, full = views.cached_answers, views.checker.full_checks
    assert world.report() == first
    assert views.cached_answers == hits + 1  # answered from the cache ...
    assert views.checker.full_checks == full  # ... without a record check redone

    # a record row edited directly in the database
    sample = ids["sample"]
    with engine.begin() as conn:
        original = bytes(conn.execute(
            text("SELECT canonical FROM records WHERE id = :id"), {"id": sample}
        ).scalar_one())
    edited = original.replace("混凝土试块".encode(), "混凝土试件".encode())
    assert edited != original
    _exec(engine, "UPDATE records SET canonical = :c WHERE id = :id", c=edited, id=sample)
    data = world.report()
    _assert_tampered(data, sample, "sample", "样品")
    assert world.report()["status"] == "tampered"  # and it stays so, cached or not
    page = world.http.get(f"/v/{world.built.code}").text
    assert 'data-status="tampered"' in page and "数据异常" in page
    _exec(engine, "UPDATE records SET canonical = :c WHERE id = :id", c=original, id=sample)
    assert world.report()["status"] == "genuine"

    # an anchored batch fact edited (the anchor no longer matches the chain)
    with engine.connect() as conn:
        seq, block = conn.execute(text(
            "SELECT b.seq, b.block_number FROM batches b JOIN outbox o"
            " ON o.seq BETWEEN b.first_seq AND b.last_seq WHERE o.record_id = :id"),
            {"id": ids["report_pdf"]}
        ).one()
    assert world.report()["status"] == "genuine"
    _exec(engine, "UPDATE batches SET block_number = :b WHERE seq = :s", b=block + 1, s=seq)
    assert world.report()["status"] == "tampered"
    _exec(engine, "UPDATE batches SET block_number = :b WHERE seq = :s", b=block, s=seq)
    assert world.report()["status"] == "genuine"

    # a blob file swapped on disk
    with engine.connect() as conn:
        sha = conn.execute(
            text("SELECT sha256 FROM record_files WHERE record_id = :id"), {"id": ids["contract"]}
        ).scalar_one()
    path = world.state.blobs.path(sha)
    original_file = path.read_bytes()
    assert world.report()["status"] == "genuine"
    path.write_bytes(make_pdf(1, "伪造合同"))
    try:
        _assert_tampered(world.report(), ids["contract"], "contract", "检测合同")
    finally:
        path.write_bytes(original_file)
    assert world.report()["status"] == "genuine"

    # the sealed PDF swapped: the record check and the signature both fail
    signed = world.state.blobs.path(world.built.sealed["sha256"])
    sealed = signed.read_bytes()
    signed.write_bytes(sealed[:-10] + b"%%EOF\n" + b" " * 4)
    try:
        data = world.report()
        _assert_tampered(data, ids["report_pdf"], "report", "报告签章")
        assert data["signature"]["ok"] is False
    finally:
        signed.write_bytes(sealed)
    data = world.report()
    assert data["status"] == "genuine" and data["signature"]["ok"] is True
    assert views.signature_validations == 0


@pytest.mark.chain
def test_stored_signature_verdict_is_only_used_under_its_rule(world: World) -> None:
    views = world.views
    engine = world.state.engine
    sha = world.built.sealed["sha256"]
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT verdict FROM signature_checks WHERE sha256 = :s"), {"s": sha}
        ).all()
    assert len(rows) == 1 and '"ok":true' in rows[0][0]
    assert world.report()["signature"]["ok"] is True
    assert views.signature_validations == 0

    # a verdict row changed by hand fails its MAC: the PDF is validated again
    _exec(engine, "UPDATE signature_checks SET verdict = :v WHERE sha256 = :s",
          v=rows[0][0].replace('"ok":true', '"ok":false'), s=sha)
    views.clear()
    assert world.report()["signature"]["ok"] is True
    assert views.signature_validations == 1
    views.drain()  # the new verdict is stored in the background

    # a verdict past SIGNATURE_VERDICT_MAX_AGE_S is not used, even with a valid MAC
    verdicts = views.verdicts
    assert verdicts is not None
    code = world.built.code
    with engine.connect() as conn:
        (verdict,) = conn.execute(
            text("SELECT verdict FROM signature_checks WHERE sha256 = :s"), {"s": sha}
        ).one()
    old = time.time() - SIGNATURE_VERDICT_MAX_AGE_S - 10
    mac = verdicts._mac(sha, verdicts.context(code), code, old, verdict)
    _exec(engine, "UPDATE signature_checks SET checked_at = :t, mac = :m WHERE sha256 = :s",
          t=old, m=mac, s=sha)
    views.clear()
    assert world.report()["signature"]["ok"] is True
    assert views.signature_validations == 2
    views.drain()

    # a fresh, valid stored verdict is used: no validation
    views.clear()
    assert world.report()["signature"]["ok"] is True
    assert views.signature_validations == 2


@pytest.mark.chain
def test_lost_anchoring_evidence_is_tampered_not_pending(world: World) -> None:
    """A record that is not queued and has no anchored batch position lost its evidence:
    数据异常, not 待上链, naming the step, through the cached path; and records put back in
    the queue after their batch was dropped are caught from the chain's batchCount."""
    views = world.views
    ids = world.built.record_ids
    engine = world.state.engine
    assert world.report()["status"] == "genuine"
    hits = views.cached_answers
    assert world.report()["status"] == "genuine"
    assert views.cached_answers == hits + 1  # the fast path answers until something moves

    with engine.connect() as conn:
        seq = conn.execute(text("SELECT b.seq FROM batches b JOIN outbox o ON o.seq"
                                " BETWEEN b.first_seq AND b.last_seq WHERE o.record_id = :id"),
                           {"id": ids["report_pdf"]}).scalar_one()
        batch = dict(conn.execute(text("SELECT * FROM batches WHERE seq = :s"),
                                  {"s": seq}).mappings().one())
        leaves = [dict(r) for r in conn.execute(
            text("SELECT * FROM outbox WHERE seq BETWEEN :f AND :l ORDER BY seq"),
            {"f": batch["first_seq"], "l": batch["last_seq"]}).mappings()]
        known = conn.execute(text("SELECT max(seq) FROM batches")).scalar_one()
    assert known == seq  # the report's PDF is in the last batch
    in_batch = {leaf["record_id"] for leaf in leaves}
    report_steps = set(ids.values())

    def checks(data: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
        return {s["record_id"]: (s["check"], (s["problem"] or {}).get("en"))
                for s in data["chain"]}

    # the last batch dropped (its row): its leaves are back above the watermark, queued
    _exec(engine, "DELETE FROM batches WHERE seq = :s", s=seq)
    data = world.report()
    assert data["status"] == "tampered", data["status"]
    lost = f"the chain has anchored {seq} batches, the database knows {seq - 1}"
    found = checks(data)
    for rid in in_batch & report_steps:
        assert found[rid][0] == "failed" and lost in str(found[rid][1]), found[rid]
    assert data["problem"]["record_id"] in in_batch
    assert lost in data["problem"]["detail"]["en"]
    page = world.http.get(f"/v/{world.built.code}").text
    assert 'data-status="tampered"' in page and "数据异常" in page

    # ... and not even queued: neither in the outbox nor in any batch
    _exec(engine, "DELETE FROM outbox WHERE seq >= :f", f=batch["first_seq"])
    data = world.report()
    assert data["status"] == "tampered"
    found = checks(data)
    for rid in in_batch & report_steps:
        assert found[rid][0] == "failed" and "neither queued" in str(found[rid][1]), found[rid]
    assert "neither queued" in data["problem"]["detail"]["en"]

    # rows put back (inserts do not move the stamp): the view follows all the same
    with engine.begin() as conn:
        cols = ", ".join(batch)
        conn.execute(text(f"INSERT INTO batches ({cols}) VALUES"
                          f" ({', '.join(':' + c for c in batch)})"), batch)
        for leaf in leaves:
            conn.execute(text("INSERT INTO outbox (seq, record_id, leaf_hash, enqueued_at)"
                              " VALUES (:seq, :record_id, :leaf_hash, :enqueued_at)"), leaf)
    assert world.report()["status"] == "genuine"

    # one record's batch position deleted while the view is cached
    assert world.report()["status"] == "genuine"
    pdf = ids["report_pdf"]
    saved = next(leaf for leaf in leaves if leaf["record_id"] == pdf)
    _exec(engine, "DELETE FROM outbox WHERE record_id = :id", id=pdf)
    data = world.report()
    assert data["status"] == "tampered"
    check, problem = checks(data)[pdf]
    assert check == "failed" and "neither queued" in str(problem)
    _assert_tampered(data, pdf, "report", "报告签章")  # named, not a sibling of its batch
    _exec(engine, "INSERT INTO outbox (seq, record_id, leaf_hash, enqueued_at)"
          " VALUES (:seq, :record_id, :leaf_hash, :enqueued_at)", **saved)
    assert world.report()["status"] == "genuine"


def test_cached_path_notices_a_dropped_stamp_trigger(world: World) -> None:
    """The head the cached path reads (StampReader; on SQLite the armed-trigger count is
    re-counted only when the schema version moves) stops trusting the stamp at once when
    a stamp trigger is dropped, and the cached answer is not given."""
    engine = world.state.engine
    dialect = engine.dialect.name
    code = world.built.code
    assert world.report()["status"] == "genuine"
    views = world.views
    reader = views.stamp
    assert reader is not None
    for _ in range(3):  # the count is kept between reads while nothing changed
        head = reader.read(code)
        assert head is not None and stamp_armed(dialect, head)
    assert views.cached_json(code) is not None
    name = STAMP_TRIGGERS[dialect][0]
    _exec(engine, f"DROP TRIGGER {name}" + (" ON records" if dialect == "postgresql" else ""))
    head = reader.read(code)
    assert head is not None and not stamp_armed(dialect, head)
    assert views.cached_json(code) is None
    assert world.report()["status"] == "genuine"  # answered, checked again, not cached
    assert views.cached_json(code) is None


@pytest.mark.chain
def test_stamp_reader_answers_again_only_while_nothing_was_committed(world: World) -> None:
    """On SQLite a head is read again only when `PRAGMA data_version` moved: any commit by
    another connection, ours or not, makes the next read query again and see it. On
    PostgreSQL every read is a query."""
    engine = world.state.engine
    sqlite = engine.dialect.name == "sqlite"
    code = world.built.code
    reader = world.views.stamp
    assert reader is not None
    first = reader.read(code)
    assert first is not None
    queries = reader.head_queries
    for _ in range(3):
        assert reader.read(code) == first
    assert reader.head_queries == queries + (0 if sqlite else 3)

    # a commit through the service's own engine (another connection of this process)
    _exec(engine, "UPDATE evidence_stamp SET counter = counter + 1 WHERE id = 1")
    moved = reader.read(code)
    assert moved is not None and moved[HEAD_ROW] == first[HEAD_ROW] + 1
    queries = reader.head_queries
    assert reader.read(code) == moved
    assert reader.head_queries == queries + (0 if sqlite else 1)

    if sqlite:  # a commit from outside the service: the sqlite3 module on the file
        db_file = engine.url.database
        assert db_file
        outside = sqlite3.connect(db_file)
        try:
            outside.execute("UPDATE report_codes SET status = 'revoked' WHERE code = ?", (code,))
            outside.commit()
        finally:
            outside.close()
        head = reader.read(code)
        assert head is not None and head[12] == "revoked"
        assert reader.head_queries == queries + 1


def _asgi_get(app: Any, path: str) -> Any:
    """One GET straight through the ASGI app on the running loop: (status, body)."""

    async def get() -> tuple[int, bytes]:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": b"", "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return status, body

    return get()


@pytest.mark.chain
def test_requests_waiting_in_one_loop_turn_share_one_check(world: World) -> None:
    """service.api.turns: the requests already waiting when a cached answer is checked are
    given that answer; a request scheduled after the check makes its own and sees a change
    committed in between."""
    code = world.built.code
    path = f"/api/v1/public/reports/{code}"
    app = world.http.app
    engine = world.state.engine
    assert world.report()["status"] == "genuine"  # built and cached
    views = world.views
    sample = world.built.record_ids["sample"]
    with engine.connect() as conn:
        original = bytes(conn.execute(
            text("SELECT canonical FROM records WHERE id = :id"), {"id": sample}
        ).scalar_one())

    async def scenario() -> None:
        hits, shared = views.cached_answers, TURNS.shared
        answers = await asyncio.gather(*(_asgi_get(app, path) for _ in range(8)))
        assert {status for status, _ in answers} == {200}
        assert len({body for _, body in answers}) == 1
        assert json.loads(answers[0][1])["status"] == "genuine"
        assert views.cached_answers == hits + 1  # one check ...
        assert TURNS.shared == shared + 7  # ... answered all eight

        await asyncio.sleep(0)  # the next turn: a check of its own
        assert (await _asgi_get(app, path))[0] == 200
        assert views.cached_answers == hits + 2

        # checked, then an edit committed in the same turn, then a request scheduled:
        # it comes after the memo's end of turn and checks again
        status, body = await _asgi_get(app, path)
        assert json.loads(body)["status"] == "genuine"
        edited = original.replace("混凝土试块".encode(), "混凝土试件".encode())
        _exec(engine, "UPDATE records SET canonical = :c WHERE id = :id", c=edited, id=sample)
        status, body = await asyncio.create_task(_asgi_get(app, path))
        assert status == 200 and json.loads(body)["status"] == "tampered"

    try:
        asyncio.run(scenario())
    finally:
        _exec(engine, "UPDATE records SET canonical = :c WHERE id = :id", c=original, id=sample)
    assert world.report()["status"] == "genuine"
