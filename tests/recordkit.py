"""Helpers for traceable-chain tests: witness keys, signed seals, multipart bodies, a chain."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from service.client import JianzhengClient
from service.clock import CHINA_TZ
from service.domain import seals
from verifier import sm2

VALID_ID_NUMBER = "11010519491231002X"
CST = CHINA_TZ


def ago(seconds: float) -> str:
    """RFC 3339 in China Standard Time, `seconds` before now."""
    ts = datetime.now(UTC) - timedelta(seconds=seconds)
    return ts.astimezone(CST).replace(microsecond=0).isoformat()


def today_cst(days_ago: int = 0) -> str:
    return (datetime.now(CST).date() - timedelta(days=days_ago)).isoformat()

#: The smallest file poppler-free code accepts as a PDF (magic + trailer).
TINY_PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def multipart(
    meta: dict[str, Any] | str, file: bytes | None = None, media_type: str = "image/jpeg"
) -> tuple[bytes, str]:
    """(body, content type) of a multipart request with a `meta` part and a `file` part."""
    text = meta if isinstance(meta, str) else json.dumps(meta, ensure_ascii=False)
    files: dict[str, Any] = {"meta": (None, text.encode("utf-8"), "application/json")}
    if file is not None:
        files["file"] = ("f.bin", file, media_type)
    req = httpx.Request("POST", "http://x/", files=files)
    return req.read(), req.headers["content-type"]


@dataclass
class WitnessSigner:
    algorithm: str
    private: Any
    key_id: str = ""
    #: An SM2 key's distinguishing ID (None: the default, 1234567812345678).
    distid: str | None = None

    @classmethod
    def new(cls, algorithm: str = "ed25519") -> WitnessSigner:
        if algorithm == "ed25519":
            return cls(algorithm, ed25519.Ed25519PrivateKey.generate())
        if algorithm == "sm2":
            return cls(algorithm, sm2.SM2PrivateKey.generate())
        return cls(algorithm, ec.generate_private_key(ec.SECP256R1()))

    def public_b64(self) -> str:
        if self.algorithm == "sm2":
            return base64.b64encode(self.private.public_der()).decode()
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def public_pem(self) -> str:
        if self.algorithm == "sm2":
            return sm2.spki_pem(self.private.point)
        pem: bytes = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode()

    def sign(self, payload: dict[str, Any]) -> str:
        message = seals.signed_bytes(payload)
        if self.algorithm == "ed25519":
            sig = self.private.sign(message)
        elif self.algorithm == "sm2":
            sig = self.private.sign_der(message, (self.distid or "1234567812345678").encode())
        else:
            sig = self.private.sign(message, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(sig).decode()

    def register(self, client: JianzhengClient, name: str = "张三") -> str:
        resp = client.post(
            "/api/v1/witness-keys",
            json_body={
                "witness": {"name": name, "id_number": VALID_ID_NUMBER, "unit": "鹏城监理"},
                "algorithm": self.algorithm,
                "public_key": self.public_pem() if self.algorithm == "ed25519" else
                self.public_b64(),
                **({"distinguishing_id": self.distid} if self.distid else {}),
            },
        )
        assert resp.status_code == 201, resp.text
        self.key_id = resp.json()["key_id"]
        return self.key_id


def created(resp: httpx.Response) -> str:
    assert resp.status_code == 201, resp.text
    record_id: str = resp.json()["record_id"]
    return record_id


def post_media(
    client: JianzhengClient, data: bytes, media_type: str = "image/jpeg", kind: str = "image"
) -> str:
    body, ctype = multipart({"kind": kind, "description": "取样照片"}, data, media_type)
    return created(client.post("/api/v1/media", content=body, content_type=ctype))


FONT_PATH = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"


def specimen_photo(label: str, size: tuple[int, int] = (640, 480)) -> bytes:
    """A real, small JPEG that looks like a site photo of a sealed concrete specimen: a
    grey cube with its seal label (`label`, e.g. the sample code) on a bench, so that key
    images in page screenshots show a picture and every sample's photo differs."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    img = Image.new("RGB", size, (176, 160, 132))  # the bench
    draw = ImageDraw.Draw(img)
    for y in range(0, height, 24):  # wood grain
        draw.line([(0, y), (width, y + 10)], fill=(160, 142, 112), width=3)
    draw.rectangle([0, 0, width, height // 4], fill=(208, 214, 218))  # the wall
    left, top, side = width // 4, height // 3, width // 2
    shade = [(left, top), (left + side, top), (left + side + 50, top - 40), (left + 50, top - 40)]
    draw.polygon(shade, fill=(196, 196, 190))  # the cube's top
    draw.polygon([(left + side, top), (left + side + 50, top - 40),
                  (left + side + 50, top + side * 3 // 5 - 40), (left + side, top + side * 3 // 5)],
                 fill=(128, 128, 124))  # its side
    draw.rectangle([left, top, left + side, top + side * 3 // 5], fill=(158, 158, 152))
    draw.rectangle([left + 30, top + 30, left + side - 30, top + 110], fill=(250, 250, 246),
                   outline=(200, 30, 30), width=4)  # the seal label
    try:
        font = ImageFont.truetype(FONT_PATH, 26)
        small = ImageFont.truetype(FONT_PATH, 18)
    except OSError:
        font = small = ImageFont.load_default()
    draw.text((left + 44, top + 38), "封样 混凝土试块", fill=(200, 30, 30), font=font)
    draw.text((left + 44, top + 76), label, fill=(20, 20, 20), font=small)
    draw.text((16, height - 34), "鹏城检测 现场取样照片", fill=(40, 40, 40), font=small)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=80)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Chain:
    """Ids of one full traceable chain of an institution."""

    project: str
    contract: str
    commission: str
    sample: str
    sample_code: str
    image: str
    image_sha256: str
    witness_key: WitnessSigner
    seal: str = ""
    witness: str = ""
    receipt: str = ""
    test_record: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def project_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "深圳湾科技园3号楼",
        "location": "深圳市南山区科苑南路",
        "region": "440305",
        "construction_unit": {"name": "深圳湾建设有限公司"},
        "supervision_unit": {"name": "鹏城监理有限公司"},
        "contractor": {"name": "中建某局"},
    }
    body.update(over)
    return body


def contract_meta(project: str, signed_on: str, **over: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "contract_no": "HT-2026-0183",
        "signed_on": signed_on,
        "parties": [
            {"role": "client", "name": "深圳湾建设有限公司"},
            {"role": "lab", "name": "深圳市某检测有限公司"},
        ],
        "parents": [project],
    }
    meta.update(over)
    return meta


def commission_body(contract: str) -> dict[str, Any]:
    return {
        "commission_no": "WT-2026-11-0042",
        "commissioned_on": today_cst(),
        "client": {"name": "深圳湾建设有限公司"},
        "items": [{"name": "混凝土抗压强度", "standard": "GB/T 50081-2019", "quantity": 3}],
        "parents": [contract],
    }


def sample_body(commission: str, code: str) -> dict[str, Any]:
    return {
        "sample_code": code,
        "name": "混凝土试块",
        "material": "C30 混凝土",
        "specification": "150mm×150mm×150mm",
        "quantity": 3,
        "unit": "组",
        "sampled_at": ago(7200),
        "parents": [commission],
    }


def seal_body(chain: Chain, *, signer: WitnessSigner | None = None, **over: Any) -> dict[str, Any]:
    signer = signer or chain.witness_key
    fields: dict[str, Any] = {
        "sample_code": chain.sample_code,
        "sealed_at": ago(3600),
        "place": "深圳湾科技园3号楼 施工现场",
        "images": [chain.image_sha256],
    }
    payload = seals.seal_payload(**fields)
    body = {
        **fields,
        "witness_key_id": chain.witness_key.key_id,
        "signature": signer.sign(payload),
        "parents": [chain.sample, chain.image],
    }
    body.update(over)
    return body


def witness_body(chain: Chain, **over: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sample_codes": [chain.sample_code],
        "witnessed_at": ago(3500),
        "location": "22.5431,113.9365 深圳湾科技园3号楼",
        "activities": ["sampling", "marking", "sealing"],
        "images": [chain.image_sha256],
    }
    payload = seals.witness_payload(**fields)
    body = {
        **fields,
        "witness_key_id": chain.witness_key.key_id,
        "signature": chain.witness_key.sign(payload),
        "parents": [chain.sample, chain.image],
    }
    body.update(over)
    return body


def receipt_body(chain: Chain, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "received_at": ago(1800),
        "received_by": "李四",
        "observed_sample_code": chain.sample_code,
        "seal_intact": True,
        "accepted": True,
        "condition": "试块完好",
        "parents": [chain.seal],
    }
    body.update(over)
    return body


def data_body(chain: Chain, finished_at: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "test_item": "混凝土抗压强度",
        "standard": "GB/T 50081-2019",
        "device": {"id": "YJ-2000-07", "name": "压力试验机"},
        "acquisition": "auto",
        "started_at": (datetime.fromisoformat(finished_at) - timedelta(minutes=10)).isoformat(),
        "finished_at": finished_at,
        "raw_data": {"loads_kN": [812.4, 798.1, 825.0], "area_mm2": 22500},
        "results": {"strength_MPa": 36.1},
        "tester": "王五",
        "parents": [chain.sample],
    }
    if chain.receipt:
        body["parents"] = [chain.sample, chain.receipt]
    body.update(over)
    return body


def build_chain(
    client: JianzhengClient,
    *,
    sample_code: str = "YP2026112200017",
    signed_on: str | None = None,
    algorithm: str = "ed25519",
    finished_at: str | None = None,
    project_fields: dict[str, Any] | None = None,
    agency: JianzhengClient | None = None,
) -> Chain:
    """A full chain; with `agency`, the agency verifies the witness key before it signs (no
    `witness_unverified` warning) and registers the test records' device and tester (no
    `device_unregistered`, `tester_unregistered`)."""
    project = created(
        client.post("/api/v1/projects", json_body=project_body(**(project_fields or {})))
    )
    signed_on = signed_on or today_cst()
    body, ctype = multipart(contract_meta(project, signed_on), TINY_PDF, "application/pdf")
    contract = created(client.post("/api/v1/contracts", content=body, content_type=ctype))
    commission = created(client.post("/api/v1/commissions", json_body=commission_body(contract)))
    sample = created(client.post("/api/v1/samples", json_body=sample_body(commission, sample_code)))
    image_bytes = specimen_photo(sample_code)
    image = post_media(client, image_bytes)
    signer = WitnessSigner.new(algorithm)
    signer.register(client)
    if agency is not None:
        verified = agency.post(
            f"/api/v1/agency/witness-keys/{signer.key_id}/verification", json_body={}
        )
        assert verified.status_code == 201, verified.text
        lab = lab_of(agency, verified.json()["record_id"])
        register_device(agency, lab)
        register_staff(agency, lab)
    chain = Chain(
        project, contract, commission, sample, sample_code, image, sha256(image_bytes), signer
    )
    chain.seal = created(client.post("/api/v1/seals", json_body=seal_body(chain)))
    chain.witness = created(client.post("/api/v1/witnesses", json_body=witness_body(chain)))
    chain.receipt = created(client.post("/api/v1/receipts", json_body=receipt_body(chain)))
    if finished_at is not None:
        chain.test_record = created(
            client.post("/api/v1/test-records", json_body=data_body(chain, finished_at))
        )
    return chain


def stored_record(state: Any, record_id: str) -> dict[str, Any]:
    """The record as stored (its canonical JSON), with its leaf hash as `_leaf`."""
    from service.storage.db import session_scope
    from service.storage.models import Record

    with session_scope(state.sessions) as s:
        row = s.get(Record, record_id)
        assert row is not None
        obj: dict[str, Any] = json.loads(row.canonical)
        obj["_leaf"] = row.leaf_hash
        return obj


#: The device `data_body` names.
DEVICE = {"id": "YJ-2000-07", "name": "压力试验机"}


def lab_of(agency: JianzhengClient, record_id: str) -> str:
    """The institution of a record the agency may read."""
    r = agency.get(f"/api/v1/records/{record_id}")
    assert r.status_code == 200, r.text
    institution: str = r.json()["record"]["institution"]
    return institution


def register_device(
    agency: JianzhengClient, institution: str, *, valid_until: str = "2099-12-31",
    device: dict[str, Any] | None = None,
) -> str:
    """The agency registers a device of the lab (by default the one `data_body` names)."""
    resp = agency.post("/api/v1/agency/devices", json_body={
        "institution": institution,
        "device": device or DEVICE,
        "calibration": {"kind": "verification", "certificate_no": "JD2026-0815",
                        "valid_until": valid_until},
    })
    return created(resp)


def register_staff(
    agency: JianzhengClient, institution: str, name: str = "王五", *,
    roles: tuple[str, ...] = ("tester",), signing_scope: tuple[str, ...] = (),
) -> str:
    """The agency registers a person of the lab (by default `data_body`'s tester)."""
    resp = agency.post("/api/v1/agency/staff", json_body={
        "institution": institution,
        "person": {"name": name, "id_number": VALID_ID_NUMBER},
        "roles": list(roles),
        "signing_scope": list(signing_scope),
    })
    return created(resp)


OCTETS = "application/offset+octet-stream"


def start_upload(client: JianzhengClient, length: int, media_type: str = "video/mp4") -> str:
    """POST /api/v1/uploads; the new upload's id."""
    resp = client.post("/api/v1/uploads", json_body={"length": length, "media_type": media_type})
    assert resp.status_code == 201, resp.text
    upload_id: str = resp.json()["upload_id"]
    assert resp.headers["location"] == f"/api/v1/uploads/{upload_id}"
    return upload_id


def patch_upload(
    client: JianzhengClient, upload_id: str, offset: int, data: bytes
) -> httpx.Response:
    """PATCH one chunk at `offset`."""
    return client.request(
        "PATCH",
        f"/api/v1/uploads/{upload_id}",
        content=data,
        content_type=OCTETS,
        headers={"Upload-Offset": str(offset)},
    )
