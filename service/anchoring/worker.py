"""The anchoring worker: outbox -> batch (RFC 6962 tree) -> `anchor(seq, root, n)` -> anchored.

Crash safety rests on one rule: every step is written to the database *before* the
step that depends on it happens on chain, and every restart first asks the chain what
really happened (`batchCount`, `anchorOf`, the `Anchored` log) before sending anything.

1. prepare   one transaction inserts the Batch (`prepared`): the next range of outbox
             rows above the watermark (service.storage.leaves), one row whatever its size;
2. sign      the signed raw transaction, its hash and nonce are stored (`sent`) before
             it is broadcast, so a crash after broadcasting can always find it again;
3. send      broadcast the stored raw transaction;
4. wait      poll for the receipt (+ `confirmations` blocks: RegistryClient.wait_mined,
             the same wait revocations use), then mark `anchored`.

The rows behind these steps are read and written by anchoring/batches.py; the worker's
own `service_state` keys by anchoring/status.py.

Reconciliation (`_reconcile_batch`) turns any crash point back into step 2/3/4: a root
already anchored on chain is recorded from its `Anchored` log; a root not anchored while
the chain is exactly one batch behind is re-broadcast (or re-signed with a fresh nonce
when its nonce was used by something else); any other disagreement between database and
chain halts sending and is reported (service_state `anchor_halted`, /healthz), because
sending then could only make things worse. The contract itself refuses a duplicate root
and a sequence gap, so even a bug here cannot double-anchor or leave a gap on chain.

One leader at a time (anchoring/leader.py): a PostgreSQL session advisory lock held on a
dedicated connection, or an `flock` lock file next to a SQLite database. Others wait.

`JZ_TEST_CRASH_AT=<point>[:<n>]` (tests only) makes the process SIGKILL itself the n-th
time it reaches `point` (one of CRASH_POINTS).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.anchoring import batches
from service.anchoring.batches import BatchRow
from service.anchoring.chaininfo import ChainInfo
from service.anchoring.contract import (
    AnchorTx,
    ChainError,
    ChainRejected,
    ChainReverted,
    ChainTimeout,
    Fees,
    RegistryClient,
    TxReceipt,
    bumped_fees,
    signed_tx_fees,
)
from service.anchoring.leader import LeaderLock, make_leader_lock
from service.anchoring.revocations import process_pending_revocations
from service.anchoring.status import (
    STATE_CHAIN_ROLES,
    STATE_HALTED,
    STATE_LAST_ERROR,
    STATE_LEADER,
    STATE_REORGS,
    STATE_ROLE_MISSING,
    STATE_WORKER_HEARTBEAT,
    count_event,
    record_failure,
    write_state,
)
from service.settings import Settings
from service.storage import loghash
from service.storage.db import make_sessionmaker

log = logging.getLogger(__name__)


CRASH_ENV = "JZ_TEST_CRASH_AT"
#: prepared: batch committed, nothing signed; signed: raw tx stored, not broadcast;
#: sent: broadcast, nothing recorded; waiting: inside the receipt wait; mined: receipt
#: in hand, batch not yet marked anchored.
CRASH_POINTS = ("prepared", "signed", "sent", "waiting", "mined")

#: How often a non-leader retries the lock, and how often the leader checks it still holds it.
LOCK_RETRY_S = 0.5
LOCK_CHECK_S = 2.0
#: Heartbeat write interval (service_state `worker_heartbeat`).
HEARTBEAT_S = 1.0
#: While idle, re-check that the database and the chain still agree this often.
IDLE_CHECK_S = 5.0
#: While halted on a mismatch, re-check this often (an operator may have fixed it).
HALT_RECHECK_S = 5.0
#: Fee fields fetched from the node are reused for this long.
FEES_TTL_S = 30.0
#: How many of the newest anchored batches each consistency check compares with the
#: chain (block number included), to notice a reorganisation that moved an anchor.
REORG_CHECK_BATCHES = 8
#: At most this many anchored batches lost count as a reorganisation (re-anchored); more,
#: or all of them, halt (the chain lost its state, or it is another chain).
MAX_REORG_BATCHES = 64
#: Longest error text kept in service_state.
MAX_ERROR_TEXT = 500


class ChainMismatch(Exception):
    """The database and the chain disagree; sending anything could make it worse."""


class RoleMissing(Exception):
    """The anchoring key does not hold ANCHORER_ROLE (revoked, or never granted)."""


# --------------------------------------------------------------------------- crash injection


class _CrashInjector:
    """Test-only: SIGKILL this process at a named point (JZ_TEST_CRASH_AT=point[:n])."""

    def __init__(self, spec: str | None) -> None:
        self.point: str | None = None
        self.remaining = 0
        if spec:
            point, _, count = spec.partition(":")
            if point not in CRASH_POINTS:
                raise ValueError(f"{CRASH_ENV}={spec!r}: point must be one of {CRASH_POINTS}")
            self.point = point
            self.remaining = int(count or "1")

    def __call__(self, point: str) -> None:
        if point != self.point:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            log.warning("test crash injection: SIGKILL at %s", point)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class AnchorResult:
    seq: int
    size: int
    tx_hash: str
    block_number: int


class AnchorWorker:
    """One anchoring worker. `run(stop)` loops until `stop` is set; `step()` is one pass."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        chain: ChainInfo,
        *,
        client: RegistryClient | None = None,
        lock: LeaderLock | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.chain = chain
        cfg = settings.chain
        self.client = client or self._registry_client(cfg.anchorer_secret())
        #: The REVOKER_ROLE account; the same client when one key does both.
        self.revoker = self.client
        if client is None and cfg.revoker_secret() != cfg.anchorer_secret():
            self.revoker = self._registry_client(cfg.revoker_secret())
        self.lock = lock or make_leader_lock(settings, engine)
        self.now = now
        self._sessions = make_sessionmaker(engine)
        # The roots it anchors are of the deployment's log hash (§7.7; refuses the other).
        self.log_hash = loghash.pin(engine, settings.evidence.hash)
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._crash = _CrashInjector(os.environ.get(CRASH_ENV))
        self._leader = False
        self._verified = False
        self._last_check = 0.0
        self._halted: str | None = None
        self._role_missing: str | None = None
        self._roles_warned: set[str] = set()
        self._revoker_ok = True
        self._nonce: int | None = None
        #: batchCount as of our own last anchor (None: unknown, ask the chain).
        self._chain_count: int | None = None
        self._fees: tuple[float, Fees] | None = None
        self._last_heartbeat = 0.0
        self._last_lock_check = 0.0
        self.anchored_batches = 0

    def _registry_client(self, key: str) -> RegistryClient:
        client = RegistryClient(
            self.chain.rpc_url,
            self.chain.registry,
            key,
            rpc_timeout=min(10.0, self.settings.chain.receipt_timeout_s),
        )
        # This loop has its own backoff; web3's silent per-call retries would only hide
        # an outage for several seconds per request.
        client.w3.provider.exception_retry_configuration = None  # type: ignore[attr-defined]
        return client

    # ----------------------------------------------------------- loop

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set: wait for leadership, then anchor; back off on failures."""
        a = self.settings.anchor
        backoff = a.retry_initial_s
        try:
            while not stop.is_set():
                if not self._ensure_leader():
                    stop.wait(LOCK_RETRY_S)
                    continue
                try:
                    worked = self.step()
                except ChainMismatch as exc:
                    self._halt(str(exc))
                    stop.wait(HALT_RECHECK_S)
                    continue
                except RoleMissing as exc:
                    self._role_alert(str(exc))
                    stop.wait(HALT_RECHECK_S)
                    continue
                except (ChainError, SQLAlchemyError, OSError) as exc:
                    self._failure(exc)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, a.retry_max_s)
                    continue
                backoff = a.retry_initial_s
                if not worked:
                    stop.wait(a.poll_interval_s)
        finally:
            self.lock.release()
            self._leader = False

    def _ensure_leader(self) -> bool:
        now = time.monotonic()
        if self._leader:
            if now - self._last_lock_check < LOCK_CHECK_S:
                return True
            self._last_lock_check = now
            if self.lock.still_held():
                return True
            log.error("anchoring worker %s lost its leader lock", self.identity)
            self._leader = False
        try:
            got = self.lock.acquire()
        except SQLAlchemyError as exc:
            log.warning("anchoring worker: cannot take the leader lock: %s", exc)
            return False
        if got:
            log.info("anchoring worker %s is the leader", self.identity)
            self._leader = True
            self._last_lock_check = now
            self._verified = False
            self._nonce = None
            self._chain_count = None
            with contextlib.suppress(SQLAlchemyError):
                self._set_state({STATE_LEADER: self.identity})
        return got

    def step(self) -> bool:
        """One pass; True if it did something (the caller polls again at once)."""
        self._heartbeat()
        now = time.monotonic()
        if self._halted is not None or not self._verified or now - self._last_check > IDLE_CHECK_S:
            self.check_consistency()
        pending = self._unanchored_batches()
        if pending:
            for batch in pending:
                if not self._reconcile_batch(batch):
                    return False  # e.g. waiting for confirmations
            return True
        self._process_revocations()
        batch = self.prepare_batch()
        if batch is None:
            return False
        self._crash("prepared")
        self._send_new(batch)
        return True

    # ----------------------------------------------------------- state / health

    def _set_state(self, values: dict[str, str]) -> None:
        write_state(self.engine, values)

    def _heartbeat(self) -> None:
        now = self.now()
        if now - self._last_heartbeat >= HEARTBEAT_S:
            self._set_state({STATE_WORKER_HEARTBEAT: f"{now:.3f}"})
            self._last_heartbeat = now

    def _failure(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_TEXT]
        log.warning("anchoring failed (will retry): %s", message)
        self._nonce = None
        self._chain_count = None
        self._fees = None
        try:
            record_failure(self.engine, message)
        except SQLAlchemyError as db_exc:
            log.error("cannot record the anchoring failure: %s", db_exc)

    def _halt(self, reason: str) -> None:
        if self._halted != reason:
            log.critical(
                "ANCHORING HALTED: the database and the chain disagree; nothing will be sent "
                "until this is resolved: %s",
                reason,
            )
        self._halted = reason
        self._nonce = None
        self._chain_count = None
        with contextlib.suppress(SQLAlchemyError):
            self._set_state({STATE_HALTED: reason, STATE_LAST_ERROR: reason[:MAX_ERROR_TEXT]})

    def _role_alert(self, reason: str) -> None:
        if self._role_missing != reason:
            log.critical("ANCHORING STOPPED: %s", reason)
        self._role_missing = reason
        self._verified = False  # check the roles again on the next pass
        with contextlib.suppress(SQLAlchemyError):
            self._set_state({STATE_ROLE_MISSING: reason})

    def check_roles(self) -> None:
        """Which roles the configured keys hold (service_state `chain_roles`, /metrics,
        `jianzheng chain info --roles`); alert on a key holding the admin role, and raise
        RoleMissing when the anchoring key lacks ANCHORER_ROLE (nothing is sent then)."""
        roles = {
            "anchorer": key_roles(self.client),
            "revoker": key_roles(self.revoker),
        }
        self._set_state({STATE_CHAIN_ROLES: json.dumps(roles, sort_keys=True)})
        for name, held in roles.items():
            if held["DEFAULT_ADMIN_ROLE"] and name not in self._roles_warned:
                self._roles_warned.add(name)
                log.error(
                    "the %s key %s holds the registry's admin role: keep the admin key off "
                    "the service (docs/operations.md)", name, held["address"],
                )
        revoker_ok = bool(roles["revoker"]["REVOKER_ROLE"])
        if not revoker_ok and self._revoker_ok:
            log.critical(
                "REVOCATIONS STOPPED: the revoker key %s does not hold REVOKER_ROLE on %s",
                roles["revoker"]["address"], self.client.address,
            )
        self._revoker_ok = revoker_ok
        if not roles["anchorer"]["ANCHORER_ROLE"]:
            raise RoleMissing(
                f"the anchoring key {self.client.sender} does not hold ANCHORER_ROLE on "
                f"registry {self.client.address}; nothing is anchored until it is granted again"
            )
        if self._role_missing is not None:
            log.warning("anchoring resumed: the anchoring key holds ANCHORER_ROLE again")
            self._role_missing = None
            self._set_state({STATE_ROLE_MISSING: ""})

    def _clear_halt(self) -> None:
        if self._halted is not None:
            log.warning("anchoring resumed: database and chain agree again")
        self._halted = None
        self._set_state({STATE_HALTED: ""})

    # ----------------------------------------------------------- consistency

    def check_consistency(self) -> None:
        """Raise ChainMismatch unless the chain holds exactly what the database says."""
        c = self.client
        chain_id = c.chain_id()
        if chain_id != self.chain.chain_id:
            raise ChainMismatch(
                f"node chain id {chain_id} is not the configured {self.chain.chain_id}"
            )
        if not c.has_code():
            raise ChainMismatch(
                f"no contract at registry {c.address} on chain {chain_id} "
                "(dev chain state lost, or the wrong chain/registry is configured)"
            )
        last, top = batches.anchored_tip(self.engine)
        count = c.batch_count()
        if last is not None:
            if last.registry_address and last.registry_address.lower() != c.address.lower():
                raise ChainMismatch(
                    f"the database's batches were anchored to registry {last.registry_address}, "
                    f"not the configured {c.address}"
                )
            if count < last.seq:
                self._recover_dropped(count, last.seq)
                last, top = batches.anchored_tip(self.engine)
            self._check_recent_anchors()
        if count > top:
            raise ChainMismatch(
                f"registry {c.address} holds {count} batches but the database knows only {top} "
                "(another writer uses this registry, or the database lost batches)"
            )
        if self._halted is not None:
            self._clear_halt()
        self.check_roles()
        self._verified = True
        self._last_check = time.monotonic()

    def _recover_dropped(self, count: int, db_last: int) -> None:
        """The registry holds `count` batches, fewer than the `db_last` the database has
        anchored. If the chain still holds batches 1..count (at least one) as the database
        has them, none of the later roots, and at most MAX_REORG_BATCHES were lost, a
        reorganisation (or a node restored from a slightly older state) dropped the later
        anchors: set those batches back to `prepared` so they are anchored again (and no
        proof of them is served meanwhile). Anything else halts."""
        c = self.client
        if count == 0 or db_last - count > MAX_REORG_BATCHES:
            # Nothing of ours left, or too much lost for a reorganisation: a node that lost
            # its state, or another chain. An operator decides.
            raise ChainMismatch(
                f"registry {c.address} holds {count} batches but the database has batch "
                f"{db_last} anchored (the chain lost state, or this is another chain)"
            )
        mine = batches.batch_root(self.engine, count)
        info = c.anchor_of(mine[0]) if mine else None
        if mine is None or info is None or (info.seq, info.leaf_count) != (count, mine[1]):
            raise ChainMismatch(
                f"registry {c.address} holds {count} batches but the database has batch "
                f"{db_last} anchored, and batch {count} differs (another chain?)"
            )
        for seq, root in batches.roots_after(self.engine, count):
            if c.anchor_of(root) is not None:
                raise ChainMismatch(
                    f"registry {c.address} holds {count} batches but the root of batch {seq} "
                    "is anchored on it"
                )
        dropped = batches.unanchor_after(self.engine, count)
        log.critical(
            "CHAIN REORGANISATION: the registry holds %d batches, the database had %d "
            "anchored; batches %d..%d are anchored again (%d reset)",
            count, db_last, count + 1, db_last, dropped,
        )
        self._nonce = None
        self._chain_count = count
        self._count_reorg()

    def _count_reorg(self) -> None:
        count_event(self.engine, STATE_REORGS)

    def _check_recent_anchors(self) -> None:
        """The newest anchored batches are where the database says: same seq and size, and
        the same block (a reorganisation may have mined an anchor again elsewhere: then
        the database follows the chain, so that proofs name the block the chain has)."""
        c = self.client
        for row in batches.recent_anchored(self.engine, REORG_CHECK_BATCHES):
            info = c.anchor_of(row.root)
            if info is None or info.seq != row.seq or info.leaf_count != row.size:
                raise ChainMismatch(
                    f"batch {row.seq} (root {row.root}) is anchored in the database but the "
                    f"registry says {info}"
                )
            if row.block_number is not None and info.block_number != row.block_number:
                found = c.find_anchor_tx(row.seq, row.root, from_block=info.block_number)
                if found is None:
                    raise ChainError(f"batch {row.seq} moved to block {info.block_number} "
                                     "but its Anchored log is missing")
                receipt = c.get_receipt(found.tx_hash)
                log.critical(
                    "CHAIN REORGANISATION: batch %d moved from block %d to block %d (tx %s)",
                    row.seq, row.block_number, found.block_number, found.tx_hash,
                )
                batches.mark_anchored(
                    self.engine, row.seq, tx_hash=found.tx_hash,
                    block_number=found.block_number, block_timestamp=found.timestamp,
                    gas_used=receipt.gas_used if receipt is not None else None,
                    anchored_at=self.now(),
                )
                self._count_reorg()

    # ----------------------------------------------------------- batches

    def _unanchored_batches(self) -> list[Any]:
        return batches.unanchored_batches(self.engine)

    def prepare_batch(self) -> BatchRow | None:
        """Close a batch if one is due (anchoring/batches.py); returns it, or None."""
        a = self.settings.anchor
        return batches.prepare_batch(
            self.engine,
            max_leaves=a.batch_max_leaves,
            max_age_s=a.batch_max_age_s,
            now=self.now,
            chain_id=self.chain.chain_id,
            registry=self.client.address,
        )

    # ----------------------------------------------------------- chain side

    def _fees_now(self) -> Fees:
        now = time.monotonic()
        if self._fees is None or now - self._fees[0] > FEES_TTL_S:
            self._fees = (now, self.client.fees())
        return self._fees[1]

    def _latest_nonce(self) -> int:
        return int(self.client.rpc("eth_getTransactionCount", [self.client.sender, "latest"]), 16)

    def _sign_and_store(self, batch: Any, nonce: int | None = None) -> tuple[bytes, str, int]:
        """Sign anchor(seq, root, size), store raw tx + hash + nonce (status sent), commit."""
        if nonce is None:
            if self._nonce is None:
                self._nonce = self.client.pending_nonce()
            nonce = self._nonce
        signed = self.client.build_anchor_tx(
            batch.seq, batch.root, batch.size, nonce, fees=self._fees_now()
        )
        batches.store_signed(self.engine, batch.seq, signed.raw, signed.hash, nonce)
        self._crash("signed")
        return signed.raw, signed.hash, nonce

    def _send_new(self, batch: Any) -> None:
        # Right after anchoring seq-1 ourselves the count is known; otherwise ask the chain.
        # (The contract refuses a gap either way; this turns a refusal into a clear halt.)
        if self._chain_count != batch.seq - 1:
            count = self.client.batch_count()
            if count != batch.seq - 1:
                self._verified = False
                raise ChainMismatch(
                    f"about to anchor batch {batch.seq} but the registry holds {count} batches"
                )
        self._chain_count = None
        raw, tx_hash, nonce = self._sign_and_store(batch)
        self._broadcast(raw, tx_hash)
        self._nonce = nonce + 1
        self._finish(batch, tx_hash)

    def _broadcast(self, raw: bytes, tx_hash: str) -> None:
        try:
            self.client.send_raw(raw)
        except ChainReverted as exc:
            # Reconciliation decides what it means (already anchored, gap, no role...).
            self._nonce = None
            raise ChainError(f"anchor tx {tx_hash} reverted: {exc}") from exc
        self._crash("sent")

    def _finish(self, batch: Any, tx_hash: str) -> AnchorResult:
        try:
            receipt = self._wait_receipt(tx_hash)
        except ChainTimeout:
            # Replace it with higher fees, then back to the loop, which checks the chain
            # again and waits for whichever of the two is mined (reconciliation).
            self._replace_stuck(batch.seq, tx_hash)
            raise
        if receipt.status != 1:
            self._nonce = None
            self._verified = False  # e.g. the role was revoked: check before sending again
            reason = "no revert data"
            try:
                self.client.preflight_anchor(batch.seq, batch.root, batch.size)
            except ChainReverted as exc:
                reason = str(exc)
            raise ChainError(f"anchor tx {tx_hash} of batch {batch.seq} failed: {reason}")
        self._crash("mined")
        event = self._anchored_event(receipt, batch)
        if event is None:
            raise ChainError(f"anchor tx {tx_hash} emitted no Anchored({batch.seq}, {batch.root})")
        return self._mark_anchored(batch, tx_hash, receipt.block_number, event, receipt.gas_used)

    def _replace_stuck(self, seq: int, tx_hash: str) -> str | None:
        """The anchor tx `tx_hash` of batch `seq` was not mined in time: sign it again with
        the same nonce and fees raised by `chain.fee_bump_percent` (at least what the node
        asks now, at most `chain.max_fee_per_gas`), store it, broadcast it; returns its
        hash. None when it is not the account's next transaction, or the fees cannot be
        raised (a network without gas charges, or the cap reached): then the same
        transaction is simply waited for again. Should the original still be mined first,
        reconciliation finds it by its Anchored log."""
        row = next((b for b in batches.unanchored_batches(self.engine) if b.seq == seq), None)
        if row is None or row.raw_tx is None or row.tx_hash != tx_hash:
            return None
        nonce, old = signed_tx_fees(row.raw_tx)
        latest = self._latest_nonce()
        if latest != nonce:
            # Not waiting for fees: its nonce was used (reconciliation finds by what), or
            # earlier nonces are missing (the chain lost state: the consistency check halts).
            log.warning("anchor tx %s of batch %d is not mined; account nonce %d, its nonce %d",
                        tx_hash, seq, latest, nonce)
            return None
        cfg = self.settings.chain
        self._fees = None
        fees = bumped_fees(old, self._fees_now(), cfg.fee_bump_percent, cfg.max_fee_per_gas)
        if fees is None:
            log.warning("anchor tx %s of batch %d is not mined yet; its fees cannot be raised "
                        "(free gas or chain.max_fee_per_gas reached), waiting", tx_hash, seq)
            return None
        signed = self.client.build_anchor_tx(row.seq, row.root, row.size, nonce, fees=fees)
        batches.store_signed(self.engine, row.seq, signed.raw, signed.hash, nonce)
        log.warning(
            "replacing stuck anchor tx %s of batch %d (nonce %d) by %s with fees %s -> %s",
            tx_hash, seq, nonce, signed.hash, old.as_tx_fields(), fees.as_tx_fields(),
        )
        self.client.send_raw(signed.raw)
        return signed.hash

    def _wait_receipt(self, tx_hash: str) -> TxReceipt:
        cfg = self.settings.chain
        return self.client.wait_mined(
            tx_hash,
            timeout=cfg.receipt_timeout_s,
            confirmations=cfg.confirmations,
            on_poll=lambda: self._crash("waiting"),
            what="anchor tx",
        )

    def _anchored_event(self, receipt: TxReceipt, batch: Any) -> int | None:
        """The block timestamp from the receipt's Anchored(seq, root) log, or None."""
        topic_seq = "0x" + batch.seq.to_bytes(32, "big").hex()
        topic_root = "0x" + batch.root
        for entry in receipt.logs:
            topics = [str(t).lower() for t in entry.get("topics", ())]
            ours = str(entry.get("address", "")).lower() == self.client.address.lower()
            if ours and topics[:3] == [self.client.anchored_topic, topic_seq, topic_root]:
                data = bytes.fromhex(str(entry["data"])[2:])
                leaf_count, timestamp = abi_decode(["uint64", "uint64"], data)
                if leaf_count != batch.size:
                    raise ChainMismatch(
                        f"batch {batch.seq} anchored with {leaf_count} leaves, not {batch.size}"
                    )
                return int(timestamp)
        return None

    def _mark_anchored(
        self, batch: Any, tx_hash: str, block_number: int, timestamp: int, gas_used: int | None
    ) -> AnchorResult:
        batches.mark_anchored(
            self.engine,
            batch.seq,
            tx_hash=tx_hash,
            block_number=block_number,
            block_timestamp=timestamp,
            gas_used=gas_used,
            anchored_at=self.now(),
        )
        self.anchored_batches += 1
        self._chain_count = batch.seq
        log.info(
            "anchored batch %d (%d leaves) in block %d, tx %s",
            batch.seq,
            batch.size,
            block_number,
            tx_hash,
        )
        return AnchorResult(batch.seq, batch.size, tx_hash, block_number)

    def _reconcile_batch(self, batch: Any) -> bool:
        """Bring one unanchored batch to `anchored` from wherever a crash left it.
        Returns False if it has to wait (confirmations)."""
        c = self.client
        info = c.anchor_of(batch.root)
        if info is not None:
            if info.seq != batch.seq or info.leaf_count != batch.size:
                raise ChainMismatch(
                    f"root of batch {batch.seq} is anchored on chain as seq {info.seq} with "
                    f"{info.leaf_count} leaves (database: {batch.size})"
                )
            found, receipt = self._locate_anchor(batch, info.block_number)
            if not c.confirmed(found.block_number, self.settings.chain.confirmations):
                return False
            if receipt is None:
                receipt = c.get_receipt(found.tx_hash)
            log.info(
                "batch %d was already anchored by tx %s; recording it", batch.seq, found.tx_hash
            )
            self._mark_anchored(
                batch,
                found.tx_hash,
                found.block_number,
                found.timestamp,
                receipt.gas_used if receipt is not None else None,
            )
            return True
        count = c.batch_count()
        if count != batch.seq - 1:
            self._verified = False
            raise ChainMismatch(
                f"batch {batch.seq} is not anchored and the registry holds {count} batches "
                f"(expected {batch.seq - 1})"
            )
        if batch.status == "prepared" or batch.raw_tx is None:
            self._send_new(batch)
            return True
        # status sent: the stored transaction may be pending, lost, or its nonce used up.
        receipt = c.get_receipt(batch.tx_hash)
        if receipt is not None and receipt.status == 1:
            raise ChainError(f"tx {batch.tx_hash} mined but root of batch {batch.seq} not anchored")
        if self._latest_nonce() > batch.tx_nonce:
            log.warning(
                "nonce %d of batch %d was used by another transaction; signing again",
                batch.tx_nonce,
                batch.seq,
            )
            self._nonce = None
            self._fees = None
            self._send_new(batch)
            return True
        log.info("re-broadcasting the stored anchor tx %s of batch %d", batch.tx_hash, batch.seq)
        tx_hash = batch.tx_hash
        self._nonce = None
        try:
            self.client.send_raw(batch.raw_tx)
        except ChainRejected as exc:
            # "already known" is fine; anything else (fees moved on, nonce gap after a chain
            # reset): sign again, replacing it with the same nonce where that nonce is usable.
            if "known" not in exc.message.lower():
                nonce = min(batch.tx_nonce, c.pending_nonce())
                log.warning(
                    "re-broadcast refused (%s); re-signing with nonce %d", exc.message, nonce
                )
                self._fees = None
                raw, tx_hash, _ = self._sign_and_store(batch, nonce=nonce)
                self._broadcast(raw, tx_hash)
        except ChainReverted as exc:
            raise ChainError(f"re-broadcast anchor tx {tx_hash} reverted: {exc}") from exc
        self._finish(batch, tx_hash)
        return True

    def _locate_anchor(
        self, batch: Any, anchor_block: int
    ) -> tuple[AnchorTx, TxReceipt | None]:
        """The transaction that anchored `batch` (the registry has its root, `anchorOf` says
        in block `anchor_block`). The stored transaction's receipt first (the usual case: a
        crash after broadcasting it); else the `Anchored` log, searched from the anchor's
        own block in bounded windows (never from block 0: Besu refuses long log ranges)."""
        c = self.client
        if batch.tx_hash:
            receipt = c.get_receipt(batch.tx_hash)
            if receipt is not None and receipt.status == 1:
                timestamp = self._anchored_event(receipt, batch)
                if timestamp is not None:
                    found = AnchorTx(
                        tx_hash=receipt.tx_hash,
                        block_number=receipt.block_number,
                        seq=batch.seq,
                        root=bytes.fromhex(batch.root),
                        leaf_count=batch.size,
                        timestamp=timestamp,
                    )
                    return found, receipt
        located = c.find_anchor_tx(batch.seq, batch.root, from_block=anchor_block)
        if located is None:
            raise ChainError(
                f"batch {batch.seq} is anchored (block {anchor_block}) but its Anchored log "
                "is missing"
            )
        return located, None

    def _process_revocations(self) -> None:
        """Send queued report revocations (same account, so between anchors)."""
        cfg = self.settings.chain
        if not self._revoker_ok:
            return  # alerted by check_roles; the queue waits for the role
        done = process_pending_revocations(
            self._sessions,
            self.revoker,
            confirmations=cfg.confirmations,
            receipt_timeout_s=cfg.receipt_timeout_s,
        )
        if done and self.revoker is self.client:
            self._nonce = None  # the revocations used nonces of the same account


def key_roles(client: RegistryClient) -> dict[str, Any]:
    """The address of `client`'s key and whether it holds each registry role."""
    held: dict[str, Any] = {"address": client.sender}
    for role in ("DEFAULT_ADMIN_ROLE", "ANCHORER_ROLE", "REVOKER_ROLE"):
        held[role] = client.has_role(role, client.sender)
    return held


# --------------------------------------------------------------------------- thread handle


class WorkerThread:
    """A worker running in a daemon thread of this process; `stop()` ends it."""

    def __init__(self, worker: AnchorWorker) -> None:
        self.worker = worker
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="jianzheng-anchor-worker", daemon=True
        )

    def _run(self) -> None:
        try:
            self.worker.run(self._stop)
        except Exception:  # pragma: no cover - logged, the API keeps serving
            log.exception("anchoring worker thread died")

    def start(self) -> WorkerThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()


def start_worker_thread(settings: Settings, engine: Engine, chain: ChainInfo) -> WorkerThread:
    """Start the anchoring worker in a thread (service.state.BackgroundLoops)."""
    return WorkerThread(AnchorWorker(settings, engine, chain)).start()


def anchor_until_drained(worker: AnchorWorker, timeout: float = 120.0) -> int:
    """Run `worker` in this thread until the outbox is empty and every batch is anchored
    (bench and tests), then give up the leader lock. Returns the number of batches
    anchored; raises TimeoutError, or whatever a step raised."""
    deadline = time.monotonic() + timeout
    if not worker._ensure_leader():
        raise RuntimeError("another worker holds the leader lock")
    before = worker.anchored_batches
    try:
        while time.monotonic() < deadline:
            worked = worker.step()
            if not worked and batches.drained(worker.engine):
                return worker.anchored_batches - before
            if not worked:
                time.sleep(0.01)
        raise TimeoutError("outbox not drained in time")
    finally:
        worker.lock.release()
        worker._leader = False
