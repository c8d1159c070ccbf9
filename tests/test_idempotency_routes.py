"""§5.2: `Idempotency-Key` works on every signed POST/PUT, not only on the ones a test
happens to exercise; and on the two late additions, behaviourally."""

from __future__ import annotations

import hashlib
import os
import re

import httpx

from service.state import ServiceState
from tests.labkit import add_agency, add_auditor, add_lab, client_for, make_app
from tests.recordkit import WitnessSigner, patch_upload, start_upload


def test_every_signed_post_and_put_takes_an_idempotency_key(app_state: ServiceState) -> None:
    """Each write route of the OpenAPI document, called with a malformed key, must refuse
    it (422 `invalid_idempotency_key`): a route that ignores the header answers otherwise."""
    app = make_app(app_state)
    lab, auditor = add_lab(app_state, 52), add_auditor(app_state)
    ignored = []
    checked = 0
    agency = add_agency(app_state)
    with client_for(app, lab) as c, client_for(app, auditor) as a, client_for(app, agency) as g:
        for path, ops in app.openapi()["paths"].items():
            if not path.startswith("/api/v1/") or path.startswith("/api/v1/public/"):
                continue  # public routes are anonymous: no caller to scope a key to
            for method in ("post", "put"):
                if method not in ops:
                    continue
                checked += 1
                client = a if path.startswith("/api/v1/audit/") else c
                client = g if path.startswith("/api/v1/agency/") else client
                url = re.sub(r"\{[^}]+\}", "01TESTID0000000000000000AA", path)
                resp = client.request(
                    method.upper(), url, json_body={}, headers={"Idempotency-Key": "not valid"}
                )
                if (resp.status_code, _code(resp)) != (422, "invalid_idempotency_key"):
                    ignored.append(f"{method.upper()} {path} -> {resp.status_code} {_code(resp)}")
    assert checked >= 15, checked  # the lab and auditor write routes are all seen
    assert ignored == []


def _code(resp: httpx.Response) -> str | None:
    try:
        code = resp.json().get("code")
    except ValueError:
        return None
    return code if isinstance(code, str) else None


def test_upload_completion_and_witness_key_revocation_replay(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 51)
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    with client_for(app, lab) as c:
        uid = start_upload(c, len(data))
        assert patch_upload(c, uid, 0, data).status_code == 204
        path = f"/api/v1/uploads/{uid}/complete"
        first = c.post(path, json_body={"sha256": sha}, headers={"Idempotency-Key": "done-1"})
        assert first.status_code == 200, first.text
        again = c.post(path, json_body={"sha256": sha}, headers={"Idempotency-Key": "done-1"})
        assert again.status_code == 200 and again.json() == first.json()
        assert again.headers.get("idempotent-replayed") == "true"
        other = c.post(
            path, json_body={"sha256": "0" * 64}, headers={"Idempotency-Key": "done-1"}
        )
        assert other.status_code == 422 and other.json()["code"] == "idempotency_mismatch"

        key_id = WitnessSigner.new().register(c)
        revoke = f"/api/v1/witness-keys/{key_id}/revocation"
        r1 = c.post(revoke, headers={"Idempotency-Key": "rev-1"})
        r2 = c.post(revoke, headers={"Idempotency-Key": "rev-1"})
        assert r1.status_code == 200 and r1.json()["revoked"] is True
        assert r2.status_code == 200 and r2.json() == r1.json()
        assert r2.headers.get("idempotent-replayed") == "true"

