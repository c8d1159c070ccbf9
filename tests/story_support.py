"""The whole service as a separate process, and a report's full story built through it.

`ServiceProcess` runs `python -m service.cli serve` (API + anchoring worker thread, or with
`worker_in_serve=False` a separate `python -m service.cli worker` process the test starts and
stops) against the session's Hardhat node and a registry of its own. Labs and auditors are
registered in the same database the way `jianzheng institution add` does. Every request
goes over real HTTP; lab and auditor calls are signed by `JianzhengClient`.

`build_story` walks the traceable chain through the lab API: project → contract (PDF) →
commission → sample → key image → witness key → seal → witness → receipt (seal checked) →
test record → report code → report metadata → sealed PDF.

Every public response fetched through `ServiceProcess.public_get/public_post` is kept in
`PUBLIC_RESPONSES` for the privacy scan.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service.anchoring.chaininfo import ChainInfo
from service.client import JianzhengClient
from service.domain import accounts
from service.settings import DatabaseSettings, EvidenceSettings, PublicSettings, Settings
from service.state import ServiceState, build_state
from service.storage.db import session_scope
from tests.anchoring_support import REPO_ROOT, start_worker, stop_worker, wait_for
from tests.labkit import Account, add_auditor, add_lab
from tests.public_kit import make_pdf
from tests.recordkit import Chain, build_chain, today_cst

#: Every public response seen by these helpers: (what, body text).
PUBLIC_RESPONSES: list[tuple[str, str]] = []
VERIFY_BIN = Path(sys.executable).parent / "jianzheng-verify"
START_TIMEOUT_S = 90.0
ANCHOR_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    data_dir: Path
    chain: ChainInfo
    service_key: str
    worker_in_serve: bool = True
    #: JZ_EVIDENCE__HASH of the deployment (§7.7).
    evidence_hash: str = "sha256"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    state: ServiceState | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'jianzheng.db'}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JZ_")}
        env.update({
            "JZ_DATA_DIR": str(self.data_dir),
            "JZ_DATABASE__URL": self.db_url,
            "JZ_CHAIN__RPC_URL": self.chain.rpc_url,
            "JZ_CHAIN__CHAIN_ID": str(self.chain.chain_id),
            "JZ_CHAIN__REGISTRY": self.chain.registry,
            "JZ_CHAIN__PRIVATE_KEY": self.service_key,
            "JZ_PUBLIC__BASE_URL": self.base_url,
            "JZ_PUBLIC__RATE_LIMIT_PER_MINUTE": "0",
            "JZ_ANCHOR__BATCH_MAX_AGE_S": "0.2",
            "JZ_ANCHOR__RUN_IN_SERVE": "true" if self.worker_in_serve else "false",
            "JZ_LOG_LEVEL": "WARNING",
            "JZ_EVIDENCE__HASH": self.evidence_hash,
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def settings(self) -> Settings:
        return Settings(
            data_dir=self.data_dir,
            database=DatabaseSettings(url=self.db_url),
            public=PublicSettings(base_url=self.base_url, rate_limit_per_minute=0),
            evidence=EvidenceSettings(hash=self.evidence_hash),  # type: ignore[arg-type]
        )

    def prepare(self) -> ServiceState:
        """Migrate the database (in this process) so accounts can be added before start."""
        if self.state is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.state = build_state(self.settings(), chain=None)
        return self.state

    def start(self) -> None:
        self.prepare()
        log = (self.data_dir / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port)],
            cwd=REPO_ROOT, env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited: {self.log_tail()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"service did not answer in {START_TIMEOUT_S} s: {self.log_tail()}")

    def start_worker(self) -> None:
        assert not self.worker_in_serve
        self.worker = start_worker(self.env(), self.data_dir / "worker.log")

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop_worker(self.worker)
            self.worker = None

    def stop(self) -> None:
        self.stop_worker()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self.state is not None:
            self.state.engine.dispose()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self.data_dir / "serve.log").read_text("utf-8", "replace")[-n:]
        except OSError:
            return ""

    # --- accounts and clients -----------------------------------------------------------

    def add_lab(self, serial: int, algorithm: str = "hmac-sha256") -> Account:
        """A lab; with `algorithm="hmac-sm3"` its client signs with a JZ1-HMAC-SM3 key."""
        lab = add_lab(self.prepare(), serial)
        if algorithm == "hmac-sha256":
            return lab
        state = self.prepare()
        with session_scope(state.sessions) as s:
            key = accounts.issue_key(s, state.settings, institution=lab.institution,
                                     algorithm=algorithm)
        return Account(key.key_id, key.secret, institution=lab.institution, algorithm=algorithm)

    def add_auditor(self, name: str = "审计员") -> Account:
        return add_auditor(self.prepare(), name)

    def client(self, account: Account) -> JianzhengClient:
        return JianzhengClient(self.base_url, account.key_id, account.secret, timeout=60,
                               algorithm=account.algorithm)

    # --- public side (unsigned), recorded for the privacy scan ----------------------------

    def public_get(self, path: str) -> httpx.Response:
        r = httpx.get(self.base_url + path, timeout=30)
        if "pdf" not in r.headers.get("content-type", ""):
            PUBLIC_RESPONSES.append((path, r.text))
        return r

    def public_post_file(self, data: bytes, name: str, media_type: str) -> httpx.Response:
        r = httpx.post(self.base_url + "/api/v1/public/verify",
                       files={"file": (name, data, media_type)}, timeout=60)
        PUBLIC_RESPONSES.append((f"verify {name}", r.text))
        return r

    def public_json(self, code: str) -> dict[str, Any]:
        r = self.public_get(f"/api/v1/public/reports/{code}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


@dataclass
class Story:
    code: str
    chain: Chain
    ids: dict[str, str]
    pdf: bytes
    sealed: dict[str, Any]


def build_story(
    client: JianzhengClient, tag: str, *, seal: bool = True, witness_algorithm: str = "ed25519"
) -> Story:
    """The traceable chain, a report code, its metadata and (optionally) its sealed PDF."""
    from tests.recordkit import ago

    sample_code = f"YP20261122{zlib.crc32(tag.encode()) % 10**5:05d}"
    chain = build_chain(client, sample_code=sample_code, finished_at=ago(60),
                        algorithm=witness_algorithm)
    ids = {
        "project": chain.project, "contract": chain.contract, "commission": chain.commission,
        "sample": chain.sample, "media": chain.image, "seal": chain.seal,
        "witness": chain.witness, "receipt": chain.receipt, "test_record": chain.test_record,
    }
    r = client.issue_code(f"BG-2026-{tag}", chain.project)
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    ids["report_issue"] = r.json()["record_id"]
    r = client.put(f"/api/v1/reports/{code}", json_body={
        "conclusion": "pass", "issued_on": today_cst(), "approver": "王五",
        "parents": [chain.sample, chain.test_record],
    })
    assert r.status_code in (200, 201), r.text
    ids["report_metadata"] = r.json()["record_id"]
    pdf = make_pdf(2, f"检测报告 {tag}")
    sealed: dict[str, Any] = {}
    if seal:
        r = client.put(f"/api/v1/reports/{code}/pdf", content=pdf, content_type="application/pdf")
        assert r.status_code == 200, r.text
        sealed = r.json()
        ids["report_pdf"] = sealed["record_id"]
    return Story(code, chain, ids, pdf, sealed)


def fetch_bundle(auditor: JianzhengClient, code: str, timeout: float = ANCHOR_TIMEOUT_S) -> bytes:
    """The report's bundle once everything is anchored (polls while the answer is 202)."""
    out: dict[str, bytes] = {}

    def ready() -> bool:
        r = auditor.get(f"/api/v1/audit/reports/{code}/bundle")
        assert r.status_code in (200, 202), r.text
        if r.status_code == 200:
            out["zip"] = r.content
            return True
        return False

    wait_for(ready, timeout, f"the bundle of {code}", interval=0.3)
    return out["zip"]


def run_verify(bundle: Path, service: ServiceProcess | None, chain: ChainInfo,
               *extra: str) -> subprocess.CompletedProcess[str]:
    """`jianzheng-verify` as a subprocess, pinned to the chain id and registry."""
    args = [str(VERIFY_BIN), str(bundle), "--rpc", chain.rpc_url, "--registry", chain.registry,
            "--chain-id", str(chain.chain_id), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)
