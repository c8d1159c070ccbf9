"""The traceable chain through the signed lab API, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update

from service.client import JianzhengClient
from service.domain.public import public_fields
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import Outbox, Record, RecordFile, SampleCode
from tests.labkit import Account, add_auditor, add_lab, client_for, make_app
from tests.recordkit import (
    TINY_PDF,
    Chain,
    WitnessSigner,
    ago,
    build_chain,
    commission_body,
    contract_meta,
    created,
    data_body,
    multipart,
    post_media,
    project_body,
    receipt_body,
    sample_body,
    seal_body,
    sha256,
    specimen_photo,
    today_cst,
    witness_body,
)
from verifier.canonical import canonicalize
from verifier.merkle import record_leaf_hash


@dataclass
class Env:
    state: ServiceState
    a: JianzhengClient
    b: JianzhengClient
    auditor: JianzhengClient
    lab_a: Account
    lab_b: Account


@pytest.fixture
def env(app_state: ServiceState) -> Iterator[Env]:
    app = make_app(app_state)
    lab_a, lab_b = add_lab(app_state, 1), add_lab(app_state, 2)
    aud = add_auditor(app_state)
    clients = [client_for(app, x) for x in (lab_a, lab_b, aud)]
    yield Env(app_state, clients[0], clients[1], clients[2], lab_a, lab_b)
    for c in clients:
        c.close()


def _check_leaf(env: Env, record_id: str, leaf: str) -> dict[str, object]:
    """The stored record re-hashes to the leaf the API answered."""
    view = env.a.get(f"/api/v1/records/{record_id}")
    assert view.status_code == 200, view.text
    obj = view.json()["record"]
    assert record_leaf_hash(obj).hex() == leaf
    with session_scope(env.state.sessions) as s:
        row = s.get(Record, record_id)
        assert row is not None
        assert canonicalize(obj) == row.canonical
        assert s.scalar(select(Outbox.leaf_hash).where(Outbox.record_id == record_id)) == leaf
    return dict(obj)


def test_every_collection_writes_a_verifiable_record(env: Env) -> None:
    chain = build_chain(env.a, finished_at=ago(60))
    ids = {
        "project": chain.project,
        "contract": chain.contract,
        "commission": chain.commission,
        "sample": chain.sample,
        "media": chain.image,
        "seal": chain.seal,
        "witness": chain.witness,
        "receipt": chain.receipt,
        "test_record": chain.test_record,
    }
    leaves: dict[str, str] = {}
    for rtype, rid in ids.items():
        obj = env.a.get(f"/api/v1/records/{rid}").json()
        leaves[rtype] = obj["leaf_hash"]
        stored = _check_leaf(env, rid, obj["leaf_hash"])
        assert stored["type"] == rtype
        assert stored["institution"] == env.lab_a.institution
    records = {t: env.a.get(f"/api/v1/records/{i}").json()["record"] for t, i in ids.items()}
    # parents are the parents' leaf hashes, in the order given
    assert records["contract"]["parents"] == [leaves["project"]]
    assert records["commission"]["parents"] == [leaves["contract"]]
    assert records["sample"]["parents"] == [leaves["commission"]]
    assert records["seal"]["parents"] == [leaves["sample"], leaves["media"]]
    assert records["receipt"]["parents"] == [leaves["seal"]]
    assert records["test_record"]["parents"] == [leaves["sample"], leaves["receipt"]]
    # files are named by SHA-256 and stored content-addressed
    pdf = records["contract"]["files"][0]
    assert pdf == {
        "role": "contract_pdf",
        "sha256": sha256(TINY_PDF),
        "size": len(TINY_PDF),
        "media_type": "application/pdf",
    }
    assert env.state.blobs.get(pdf["sha256"]) == TINY_PDF
    image = records["media"]["files"][0]
    assert image["sha256"] == chain.image_sha256
    assert sha256(env.state.blobs.get(image["sha256"])) == image["sha256"]
    # the seal carries what re-verifies it; the witness identity comes from the key
    seal = records["seal"]["body"]
    assert seal["signed"]["format"] == "jianzheng-seal/1"
    assert seal["signed"]["images"] == [chain.image_sha256]
    assert seal["witness_key"]["public_key"] == chain.witness_key.public_b64()
    assert records["witness"]["body"]["witness"]["id_number"] == "11010519491231002X"
    assert records["receipt"]["body"]["seal_check"]["result"] == "pass"
    assert records["test_record"]["body"]["flags"] == []
    assert records["contract"]["body"]["flags"] == []


def test_ecdsa_p256_witness_key(env: Env) -> None:
    chain = build_chain(env.a, algorithm="ecdsa-p256")
    rec = env.a.get(f"/api/v1/records/{chain.seal}").json()["record"]
    assert rec["body"]["witness_key"]["algorithm"] == "ecdsa-p256"


def _partial_chain(client: JianzhengClient, code: str = "YP-1") -> Chain:
    project = created(client.post("/api/v1/projects", json_body=project_body()))
    body, ctype = multipart(contract_meta(project, today_cst()), TINY_PDF, "application/pdf")
    contract = created(client.post("/api/v1/contracts", content=body, content_type=ctype))
    commission = created(client.post("/api/v1/commissions", json_body=commission_body(contract)))
    sample = created(client.post("/api/v1/samples", json_body=sample_body(commission, code)))
    image_bytes = specimen_photo(code)
    image = post_media(client, image_bytes)
    signer = WitnessSigner.new()
    signer.register(client)
    return Chain(project, contract, commission, sample, code, image, sha256(image_bytes), signer)


def test_seal_signature_bad_is_refused_good_is_recorded(env: Env) -> None:
    chain = _partial_chain(env.a)
    other = WitnessSigner.new()  # a key never registered
    bad = env.a.post("/api/v1/seals", json_body=seal_body(chain, signer=other))
    assert bad.status_code == 422 and bad.json()["code"] == "seal_signature_invalid"
    # signed fields altered after signing
    good_body = seal_body(chain)
    tampered = {**good_body, "place": good_body["place"] + " (改)"}
    resp = env.a.post("/api/v1/seals", json_body=tampered)
    assert resp.json()["code"] == "seal_signature_invalid"
    not_b64 = {**good_body, "signature": "!!!not base64!!!"}
    assert env.a.post("/api/v1/seals", json_body=not_b64).json()["code"] == (
        "seal_signature_invalid"
    )
    with session_scope(env.state.sessions) as s:
        assert s.scalar(select(Record.id).where(Record.type == "seal")) is None
    assert env.a.post("/api/v1/seals", json_body=good_body).status_code == 201
    # the sealed code must be the sample parent's code
    wrong_code = seal_body(chain, sample_code="YP-OTHER")
    assert env.a.post("/api/v1/seals", json_body=wrong_code).json()["code"] == (
        "sample_code_mismatch"
    )
    # every sealed image must be a media parent
    no_media = seal_body(chain, parents=[chain.sample])
    assert env.a.post("/api/v1/seals", json_body=no_media).json()["code"] == (
        "image_not_in_parents"
    )


def test_revoked_witness_key_signs_nothing_new(env: Env) -> None:
    chain = _partial_chain(env.a)
    key_id = chain.witness_key.key_id
    assert env.a.post(f"/api/v1/witness-keys/{key_id}/revocation").json()["revoked"] is True
    resp = env.a.post("/api/v1/seals", json_body=seal_body(chain))
    assert resp.status_code == 422 and resp.json()["code"] == "witness_key_revoked"


def test_witness_signature_checked(env: Env) -> None:
    chain = _partial_chain(env.a)
    body = witness_body(chain)
    body["activities"] = ["sampling"]  # differs from what was signed
    resp = env.a.post("/api/v1/witnesses", json_body=body)
    assert resp.status_code == 422 and resp.json()["code"] == "witness_signature_invalid"


def test_receipt_records_a_failed_seal_check(env: Env) -> None:
    chain = _partial_chain(env.a)
    chain.seal = created(env.a.post("/api/v1/seals", json_body=seal_body(chain)))
    # 1. the lab reads another code off the sample: recorded as a failed check
    resp = env.a.post(
        "/api/v1/receipts", json_body=receipt_body(chain, observed_sample_code="YP-9")
    )
    assert resp.status_code == 201, resp.text
    check = resp.json()["seal_check"]
    assert check["result"] == "fail" and check["failed"] == ["sample_code_matches"]
    stored = env.a.get(f"/api/v1/records/{resp.json()['record_id']}").json()["record"]
    assert stored["body"]["seal_check"] == check
    # the public page shows the failed check as failed (✗), from the body the API stored
    assert public_fields("receipt", stored["body"])["seal_check"] is False
    # 2. the stored seal was edited in the database: the re-verification catches it
    with session_scope(env.state.sessions) as s:
        row = s.get(Record, chain.seal)
        assert row is not None
        obj = json.loads(row.canonical)
        obj["body"]["signed"]["place"] = "别处"
        s.execute(
            update(Record).where(Record.id == chain.seal).values(canonical=canonicalize(obj))
        )
    resp = env.a.post("/api/v1/receipts", json_body=receipt_body(chain))
    assert resp.status_code == 201
    check = resp.json()["seal_check"]
    assert check["result"] == "fail"
    assert set(check["failed"]) == {"record_intact", "signature_valid"}
    # 3. the lab finds the seal broken
    resp = env.a.post("/api/v1/receipts", json_body=receipt_body(chain, seal_intact=False))
    assert "seal_intact" in resp.json()["seal_check"]["failed"]


def test_public_view_of_a_passed_seal_check(env: Env) -> None:
    chain = build_chain(env.a, finished_at=ago(60))
    stored = env.a.get(f"/api/v1/records/{chain.receipt}").json()["record"]
    assert stored["body"]["seal_check"]["result"] == "pass"
    assert public_fields("receipt", stored["body"])["seal_check"] is True


def test_duplicate_sample_code_409(env: Env) -> None:
    chain = _partial_chain(env.a, code="YP-DUP")
    again = env.a.post("/api/v1/samples", json_body=sample_body(chain.commission, "YP-DUP"))
    assert again.status_code == 409 and again.json()["code"] == "duplicate_sample_code"
    # another institution may use the same code
    other = _partial_chain(env.b, code="YP-DUP")
    with session_scope(env.state.sessions) as s:
        rows = s.scalars(select(SampleCode).where(SampleCode.sample_code == "YP-DUP")).all()
        assert {r.record_id for r in rows} == {chain.sample, other.sample}


def test_isolation_between_institutions(env: Env) -> None:
    chain = build_chain(env.a, finished_at=ago(60))
    mine = [chain.project, chain.contract, chain.sample, chain.seal, chain.receipt]
    for rid in mine:
        resp = env.b.get(f"/api/v1/records/{rid}")
        assert resp.status_code == 403 and resp.json()["code"] == "forbidden"
        assert env.auditor.get(f"/api/v1/records/{rid}").status_code == 200
    # B cannot derive anything from A's records
    b_chain = _partial_chain(env.b, code="YP-B")
    attempts = [
        ("/api/v1/commissions", commission_body(chain.contract)),
        ("/api/v1/samples", sample_body(chain.commission, "YP-B2")),
        ("/api/v1/receipts", receipt_body(b_chain, parents=[chain.seal])),
        ("/api/v1/test-records", data_body(b_chain, ago(60), parents=[chain.sample])),
        ("/api/v1/seals", seal_body(b_chain, parents=[b_chain.sample, chain.image])),
        ("/api/v1/witnesses", witness_body(b_chain, parents=[chain.sample, b_chain.image])),
        ("/api/v1/witnesses", witness_body(b_chain, parents=[b_chain.sample, chain.image])),
    ]
    for path, body in attempts:
        resp = env.b.post(path, json_body=body)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["code"] == "forbidden"
    mp, ctype = multipart(contract_meta(chain.project, today_cst()), TINY_PDF, "application/pdf")
    assert env.b.post("/api/v1/contracts", content=mp, content_type=ctype).status_code == 403
    # A's witness key is not B's
    resp = env.b.post(
        "/api/v1/seals", json_body=seal_body(b_chain, witness_key_id=chain.witness_key.key_id)
    )
    assert resp.status_code == 403
    assert env.b.get(f"/api/v1/witness-keys/{chain.witness_key.key_id}").status_code == 403
    revoke = env.b.post(f"/api/v1/witness-keys/{chain.witness_key.key_id}/revocation")
    assert revoke.status_code == 403
    assert env.a.get(f"/api/v1/witness-keys/{chain.witness_key.key_id}").json()["revoked"] is False
    # lists show only one's own
    flags_b = env.b.get("/api/v1/flags").json()
    assert all(f["institution"] == env.lab_b.institution for f in flags_b)
    # lab keys cannot use auditor views
    assert env.a.get("/api/v1/audit/flags").status_code == 403


def test_parent_rules(env: Env) -> None:
    chain = _partial_chain(env.a, code="YP-P")
    missing = "01JD3Q2Y7ZK1M8R0F4T6W9XH5C"
    cases = [
        ("/api/v1/commissions", commission_body(missing), 404, "parent_not_found"),
        ("/api/v1/commissions", commission_body(chain.project), 422, "parent_type_invalid"),
        ("/api/v1/samples", sample_body(chain.contract, "YP-Q"), 422, "parent_type_invalid"),
        ("/api/v1/commissions", {**commission_body(chain.contract), "parents": []}, 422,
         "parent_required"),
        ("/api/v1/commissions",
         {**commission_body(chain.contract), "parents": [chain.contract, chain.contract]},
         422, "parent_duplicate"),
        ("/api/v1/test-records", data_body(chain, ago(60), parents=[chain.image]), 422,
         "parent_required"),
        ("/api/v1/receipts", receipt_body(chain, parents=[chain.sample]), 422,
         "parent_type_invalid"),
    ]
    for path, body, status, code in cases:
        resp = env.a.post(path, json_body=body)
        assert (resp.status_code, resp.json()["code"]) == (status, code), (path, resp.text)


def test_media_from_file_and_raw_data_file(env: Env) -> None:
    chain = _partial_chain(env.a, code="YP-M")
    curve = b"t,load\n0,0\n1,812.4\n"
    data_media = post_media(env.a, curve, "text/csv", kind="data")
    body = data_body(
        chain, ago(60), raw_data=None, raw_data_file=sha256(curve),
        parents=[chain.sample, data_media],
    )
    body.pop("raw_data")
    resp = env.a.post("/api/v1/test-records", json_body=body)
    assert resp.status_code == 201, resp.text
    with session_scope(env.state.sessions) as s:
        row = s.scalars(select(RecordFile).where(RecordFile.record_id == data_media)).one()
        assert (row.sha256, row.media_type) == (sha256(curve), "text/csv")
    # a raw data file that is not a parent's
    body["parents"] = [chain.sample]
    resp = env.a.post("/api/v1/test-records", json_body=body)
    assert resp.status_code == 422 and resp.json()["code"] == "image_not_in_parents"


def test_idempotent_record_post(env: Env) -> None:
    first = env.a.post("/api/v1/projects", json_body=project_body(), idempotency_key="p-1")
    again = env.a.post("/api/v1/projects", json_body=project_body(), idempotency_key="p-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = env.a.post(
        "/api/v1/projects", json_body=project_body(name="别的"), idempotency_key="p-1"
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_mismatch"
