"""A lab builds from the OpenAPI examples: every request example of `/openapi.json`, taken
from the served document, is sent as written to a live in-process service (a fresh
database), signed like any client, with only the ids filled in from the answers to the
earlier examples, and gets the answer the story expects (2xx, or the documented verdict).

The examples are one world (service/api/openapi_examples.json `requests`): the project the
contract's `parents` name is the one the project example creates, and so on. `STORY` is the
order a lab sends them in and which answer field gives each world id its live value. A
request example the story does not send fails the test, so a new route's example joins it.

Times are sent as written: the world's are in the past (2026-11-22) and in order, and a
past time is never refused (a late upload is flagged, not rejected), so only ids need
filling. The seal and witness signatures cover no id, so they stay valid too.

Binary values: a value beginning `data:` (RFC 2397) stands for its decoded bytes; any other
string is sent as its UTF-8 bytes (the examples' PDFs are plain-text PDF files). A multipart
part's content type is the data URI's, else the first of the document's `encoding`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from starlette.testclient import TestClient

from service.client import JianzhengClient
from service.domain import seals
from service.state import build_state
from tests.fixtures.db import make_settings
from tests.labkit import add_lab, client_for, make_app

# The world's ids (as in the answer examples where they show).
PROJECT = "01M82ER52Y8N72FX8022AC8EFW"
CONTRACT = "01M82ER5CGKDJJCM1M5TF9X72G"
COMMISSION = "01M82ER5D0ZQ4C7W9T2B6H3K8N"
SAMPLE = "01M82ER5DMA6X3P9R2V7C1T4QE"
MEDIA = "01M82ER5E1ZJPWDJ8PNATG34KP"
KEY = "01M82ER5FSC1MY744D4WMSBRMR"
SEAL = "01M82ER5GRHTNRM3WYHPHR0P91"
RECEIPT = "01M82ER5HCW5D8F2G7J3K9M4PR"
TEST_RECORD = "01M82ER5HYWA3PYYQVE9458HE1"
DATA_UPLOAD = "01M82ER6D5F66BYQGH6EYFX6ZQ"
PDF_UPLOAD = "01M82ER6E7R3T9V2X5Z8B4D6FH"
CODE = "44030026ENEEHLMLXLK"
FAILED = "44030026PLBAQTTPYIR"
SUCCESSOR = "4403002622DOAHF7M5R"
WITHDRAWN = "44030026WQ3RT7KZ9MA"

#: The witness key of the examples: its public half is the witness-keys example, and the
#: seal and witness examples are signed by it (Ed25519 is deterministic: re-signing an edited
#: example gives its new signature: `example_signature`).
EXAMPLE_WITNESS_SEED = hashlib.sha256(b"jianzheng openapi example witness key").digest()


def example_signature(payload: dict[str, Any]) -> str:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(EXAMPLE_WITNESS_SEED)
    return base64.b64encode(key.sign(seals.signed_bytes(payload))).decode()


@dataclass(frozen=True)
class Step:
    op: str  # "METHOD /path/template media/type"
    example: str
    path: dict[str, str] = field(default_factory=dict)  # path parameters (world values)
    learn: dict[str, str] = field(default_factory=dict)  # answer field -> world id it gives
    status: int = 0  # 0: any 2xx
    verdict: str | None = None  # POST /api/v1/public/verify: the answer's `verdict`


J = "application/json"
MP = "multipart/form-data"
UP = {"upload_id": DATA_UPLOAD}
STORY: list[Step] = [
    Step(f"POST /api/v1/projects {J}", "project", learn={"record_id": PROJECT}),
    Step(f"POST /api/v1/contracts {MP}", "contract", learn={"record_id": CONTRACT}),
    Step(f"POST /api/v1/commissions {J}", "commission", learn={"record_id": COMMISSION}),
    Step(f"POST /api/v1/samples {J}", "sample", learn={"record_id": SAMPLE}),
    Step(f"POST /api/v1/media {MP}", "image", learn={"record_id": MEDIA}),
    Step(f"POST /api/v1/witness-keys {J}", "ed25519", learn={"key_id": KEY}),
    Step(f"POST /api/v1/seals {J}", "seal", learn={"record_id": SEAL}),
    Step(f"POST /api/v1/witnesses {J}", "witness"),
    Step(f"POST /api/v1/receipts {J}", "receipt", learn={"record_id": RECEIPT}),
    Step(f"POST /api/v1/test-records {J}", "test_record", learn={"record_id": TEST_RECORD}),
    Step(f"POST /api/v1/test-plans {J}", "pile_test"),
    Step(f"POST /api/v1/uploads {J}", "data", learn={"upload_id": DATA_UPLOAD}),
    Step("PATCH /api/v1/uploads/{upload_id} application/offset+octet-stream", "first", UP,
         status=204),
    Step("PATCH /api/v1/uploads/{upload_id} application/offset+octet-stream", "last", UP,
         status=204),
    Step(f"POST /api/v1/uploads/{{upload_id}}/complete {J}", "data", UP),
    Step(f"POST /api/v1/media {J}", "from_upload"),
    Step(f"POST /api/v1/uploads {J}", "pdf", learn={"upload_id": PDF_UPLOAD}),
    Step("PATCH /api/v1/uploads/{upload_id} application/offset+octet-stream", "pdf",
         {"upload_id": PDF_UPLOAD}, status=204),
    Step(f"POST /api/v1/uploads/{{upload_id}}/complete {J}", "pdf", {"upload_id": PDF_UPLOAD}),
    Step(f"POST /api/v1/contracts {J}", "from_upload"),
    Step(f"POST /api/v1/report-codes {J}", "first", learn={"code": CODE}),
    Step(f"PUT /api/v1/reports/{{code}} {J}", "pass", {"code": CODE}),
    Step("PUT /api/v1/reports/{code}/pdf application/pdf", "report", {"code": CODE}),
    Step(f"POST /api/v1/report-codes {J}", "failed", learn={"code": FAILED}),
    Step(f"PUT /api/v1/reports/{{code}} {J}", "fail", {"code": FAILED}),
    Step(f"POST /api/v1/report-codes {J}", "corrected", learn={"code": SUCCESSOR}),
    Step(f"POST /api/v1/reports/{{code}}/revocation {J}", "supersede", {"code": FAILED}),
    Step(f"POST /api/v1/report-codes {J}", "withdrawn", learn={"code": WITHDRAWN}),
    Step(f"POST /api/v1/reports/{{code}}/revocation {J}", "revoke", {"code": WITHDRAWN}),
    Step(f"POST /api/v1/report-codes {J}", "scoped"),
    Step(f"POST /api/v1/registry-proposals {J}", "staff"),
    Step(f"POST /api/v1/registry-proposals {J}", "device"),
    Step(f"POST /api/v1/registry-proposals {J}", "qualification"),
    Step(f"POST /api/v1/numbering/voids {J}", "void"),
    Step(f"POST /api/v1/public/verify {MP}", "pdf", verdict="not_ours"),
    Step(f"POST /api/v1/public/verify {MP}", "photo", verdict="unreadable"),
    Step("POST /tsa application/timestamp-query", "sha256"),
]


def request_examples(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every request example of the document: (op, name) -> the media's Example Object."""
    out = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            for media_type, media in op.get("requestBody", {}).get("content", {}).items():
                for name, example in media.get("examples", {}).items():
                    out[(f"{method.upper()} {path} {media_type}", name)] = example
    return out


def as_bytes(value: str) -> tuple[bytes, str | None]:
    """The bytes an example value stands for, and the media type a data URI names."""
    match = re.fullmatch(r"data:([^;,]+)(;base64)?,(.*)", value, re.S)
    if match is None:
        return value.encode("utf-8"), None
    raw = match.group(3)
    return (base64.b64decode(raw) if match.group(2) else raw.encode()), match.group(1)


class Lab:
    def __init__(self, doc: dict[str, Any], lab: JianzhengClient, public: TestClient) -> None:
        self.doc, self.lab, self.public = doc, lab, public
        self.examples = request_examples(doc)
        self.ids: dict[str, str] = {}

    def fill(self, value: Any) -> Any:
        if isinstance(value, str):
            for world, live in self.ids.items():
                value = value.replace(world, live)
            return value
        return json.loads(self.fill(json.dumps(value, ensure_ascii=False)))

    def build(self, step: Step) -> tuple[str, str, bytes, str, dict[str, str]]:
        """(method, path, body, content type, headers) of the step's example, ids filled."""
        method, template, media_type = step.op.split(" ")
        value = self.fill(self.examples[(step.op, step.example)]["value"])
        path = template
        for name, world in step.path.items():
            path = path.replace("{" + name + "}", self.ids[world])
        op = self.doc["paths"][template][method.lower()]
        headers = self.header_examples(op, step.example)
        if media_type == J:
            body = json.dumps(value, ensure_ascii=False).encode("utf-8")
        elif media_type == MP:
            body, media_type = self.multipart(op, value)
        else:
            body, _ = as_bytes(value)
        return method, path, body, media_type, headers

    def send(
        self, request: tuple[str, str, bytes, str, dict[str, str]],
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        method, path, body, media_type, headers = request
        if path.startswith("/api/v1/") and not path.startswith("/api/v1/public/"):
            return self.lab.request(method, path, content=body, content_type=media_type,
                                    headers=headers, idempotency_key=idempotency_key)
        return self.public.request(method, path, content=body,
                                   headers={"Content-Type": media_type, **headers})

    @staticmethod
    def header_examples(op: dict[str, Any], name: str) -> dict[str, str]:
        """Header parameters with an example of the body example's name (Upload-Offset)."""
        return {
            p["name"]: p["examples"][name]["value"] for p in op.get("parameters", [])
            if p["in"] == "header" and name in p.get("examples", {})
        }

    @staticmethod
    def multipart(op: dict[str, Any], value: dict[str, str]) -> tuple[bytes, str]:
        encoding = op["requestBody"]["content"][MP].get("encoding", {})
        files = {}
        for part, text in value.items():
            data, media_type = as_bytes(text)
            declared = encoding.get(part, {}).get("contentType", "")
            media_type = media_type or declared.split(",")[0].strip() or "text/plain"
            # `meta` is a plain field (no file name), `file` a file part.
            files[part] = (None if part == "meta" else f"{part}.bin", data, media_type)
        req = httpx.Request("POST", "http://x/", files=files)
        return req.read(), req.headers["content-type"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp: Path = tmp_path_factory.mktemp("lab")
    settings = make_settings(
        tmp, f"sqlite:///{tmp / 'jz.db'}", public={"base_url": "https://jz.example.gov.cn"}
    )
    state = build_state(settings, chain=None)
    app = make_app(state)
    lab = client_for(app, add_lab(state, 1))
    public = TestClient(app, base_url="http://testserver", raise_server_exceptions=False)
    try:
        yield Lab(app.openapi(), lab, public)
    finally:
        lab.close()
        public.close()
        state.engine.dispose()


def test_every_request_example_is_in_the_story(world: Lab) -> None:
    sent = {(s.op, s.example) for s in STORY}
    assert len(sent) == len(STORY), "a step twice"
    missing = sorted(set(world.examples) - sent)
    assert missing == [], f"request examples no step of STORY sends: {missing}"
    assert sorted(sent - set(world.examples)) == []


def takes_idempotency_key(world: Lab, step: Step) -> bool:
    method, template, _ = step.op.split(" ")
    op = world.doc["paths"][template][method.lower()]
    return any(p["name"] == "Idempotency-Key" for p in op.get("parameters", []))


#: Headers a replay may answer differently from the first answer.
_PER_ANSWER = {"date", "idempotent-replayed"}


def test_a_lab_sends_every_request_example_as_written(world: Lab) -> None:
    """...and every write that takes an Idempotency-Key is sent twice with one: the replay
    is the first answer byte for byte (status, body, headers but `Idempotent-Replayed`)."""
    replayed = 0
    for n, step in enumerate(STORY):
        key = f"story-{n}" if takes_idempotency_key(world, step) else None
        request = world.build(step)  # a retry sends the same bytes (multipart boundary too)
        resp = world.send(request, key)
        ok = resp.status_code == step.status if step.status else 200 <= resp.status_code < 300
        assert ok, f"{step.op} {step.example}: {resp.status_code} {resp.text[:500]}"
        if key is not None:
            again = world.send(request, key)
            where = f"{step.op} {step.example}: the replay"
            assert again.headers.get("Idempotent-Replayed") == "true", where
            assert resp.headers.get("Idempotent-Replayed") is None, step.op
            assert (again.status_code, again.content) == (resp.status_code, resp.content), where
            first = {k: v for k, v in resp.headers.items() if k not in _PER_ANSWER}
            assert {k: v for k, v in again.headers.items() if k not in _PER_ANSWER} == first
            replayed += 1
        if step.verdict is not None:
            assert resp.json()["verdict"] == step.verdict, resp.text[:500]
        for answer_field, world_id in step.learn.items():
            world.ids[world_id] = resp.json()[answer_field]
    assert replayed >= 25
    # The records the examples name are the ones the story made (the ids really were filled).
    sealed = world.lab.get(f"/api/v1/reports/{world.ids[CODE]}").json()
    assert sealed["status"] == "reported" and sealed["pdf_record_id"]
    failed = world.lab.get(f"/api/v1/reports/{world.ids[FAILED]}").json()
    assert failed["superseded_by"] == world.ids[SUCCESSOR]


def test_json_request_models_show_the_same_examples(world: Lab) -> None:
    """A request model's own `examples` are the body's named examples (not placeholders)."""
    schemas = world.doc["components"]["schemas"]
    for (op, _), _example in world.examples.items():
        method, path, media_type = op.split(" ")
        if media_type != J:
            continue
        media = world.doc["paths"][path][method.lower()]["requestBody"]["content"][J]
        schema = media["schema"]
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        assert schema["examples"] == [e["value"] for e in media["examples"].values()], op


def test_the_seal_and_witness_examples_are_signed_by_the_example_key(world: Lab) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(EXAMPLE_WITNESS_SEED)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    assert world.examples[(f"POST /api/v1/witness-keys {J}", "ed25519")]["value"][
        "public_key"] == pem
    seal = world.examples[(f"POST /api/v1/seals {J}", "seal")]["value"]
    fields = {k: seal[k] for k in ("sample_code", "sealed_at", "place", "images")}
    assert seal["signature"] == example_signature(seals.seal_payload(**fields))
    wit = world.examples[(f"POST /api/v1/witnesses {J}", "witness")]["value"]
    fields = {k: wit[k] for k in
              ("sample_codes", "witnessed_at", "location", "activities", "images")}
    assert wit["signature"] == example_signature(seals.witness_payload(**fields))
    # The images they name are the media example's file.
    image = world.examples[(f"POST /api/v1/media {MP}", "image")]["value"]["file"]
    assert seal["images"] == [hashlib.sha256(as_bytes(image)[0]).hexdigest()]


DOCS = Path(__file__).resolve().parent.parent / "docs"
_DOC_BLOCK = re.compile(r"`(POST|PUT|PATCH) (/\S+)`[^\n]*\n\s*```json\n(.*?)\n```", re.S)


@pytest.mark.parametrize("name", ["records.md", "report-codes.md"])
def test_the_docs_request_bodies_are_the_sent_examples(world: Lab, name: str) -> None:
    """Each JSON body docs/records.md and docs/report-codes.md show under a `METHOD /path`
    parses and is one of that route's request examples: the story sent it as written."""
    text = (DOCS / name).read_text(encoding="utf-8")
    blocks = _DOC_BLOCK.findall(text)
    assert len(blocks) >= (8 if name == "records.md" else 4)
    assert len(blocks) == text.count("```json"), "a ```json block without its `METHOD /path`"
    for method, path, body in blocks:
        value = json.loads(body)
        sent = [e["value"] for (op, _), e in world.examples.items() if op == f"{method} {path} {J}"]
        assert value in sent, f"{name}: {method} {path}: not an example of /openapi.json"


def test_the_story_ids_are_the_answer_examples(world: Lab) -> None:
    """The ids the request examples name are those the answer examples show being made."""
    def answer(key: str) -> Any:
        media = world.doc["paths"][key.split(" ")[1]][key.split(" ")[0].lower()]["responses"]
        return media[key.split(" ")[2]]["content"][J]["example"]
    assert answer("POST /api/v1/projects 201")["record_id"] == PROJECT
    assert answer("POST /api/v1/contracts 201")["record_id"] == CONTRACT
    assert answer("POST /api/v1/media 201")["record_id"] == MEDIA
    assert answer("POST /api/v1/seals 201")["record_id"] == SEAL
    assert answer("POST /api/v1/witness-keys 201")["key_id"] == KEY
    assert answer("POST /api/v1/uploads 201")["upload_id"] == DATA_UPLOAD
    assert answer("POST /api/v1/report-codes 201")["code"] == CODE
    assert answer("POST /api/v1/reports/{code}/revocation 201")["code"] == FAILED
    assert answer("POST /api/v1/reports/{code}/revocation 201")["superseded_by"] == SUCCESSOR
