"""Report views: the checked view of one report, its caches, and the wiring of a process.

A finished view (no pending or unavailable check) is kept with what it was built from:
the report code row, the evidence change stamp, and the stat of every blob file it read.
Migration 0004_change_stamp installs triggers that add one to `evidence_stamp.counter` on
every UPDATE/DELETE of records, record files, parent links, batch leaves and of a batch's
anchored facts. Every view reads, in one query, the code row, the counter and whether
those triggers are in place (`StampReader`), and `os.stat`s the files; when all of it is
as it was, the view's checks still hold and its JSON is answered as it is. Anything else
(the counter moved, a trigger is missing or disabled, a file's stat changed, the view is
older than VIEW_MAX_AGE_S) rebuilds the view, re-reading every row and re-checking what
differs from its cached inputs (`Checker`).
Deleting a batch or a batch leaf moves the stamp (0004's delete triggers); a view whose
checks found lost anchoring evidence is not kept as final (putting rows back is an
INSERT, which does not move the stamp), so it is rebuilt on every request.

The report's revocation is read from the contract and reused for REVOCATION_TTL_S
seconds; anchors, once confirmed, never change and are kept (`ChainReader`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from service.anchoring.chaininfo import ChainInfo
from service.domain.codes import canonical_or_none
from service.domain.history import history_record_ids
from service.domain.public.chain import ChainError, ChainReader
from service.domain.public.checks import (
    Checked,
    Checker,
    FileSeen,
    FileStat,
    RecordCheck,
    files_of,
    safe_obj,
)
from service.domain.public.presentation import Status, build_view_data
from service.domain.public.queries import CodeRow, load_ancestry
from service.domain.public.verdicts import (
    SIGNATURE_VERDICT_MAX_AGE_S,
    Signature,
    SignatureCheck,
    SignatureChecker,
    SignatureVerdicts,
)
from service.settings import Settings
from service.storage import loghash
from service.storage.blobs import BlobStore
from service.storage.public_sql import (
    StampReader,
    read_batch_leaves,
    read_head,
    read_known_batches,
    stamp_armed,
)
from verifier import custody
from verifier.merkle import DEFAULT_ALG, HashAlg
from verifier.models import RevocationInfo

log = logging.getLogger(__name__)

#: Age at which a cached view's revocation is re-read in the background (one read per
#: code at a time), so requests keep being answered from the cache meanwhile.
REVOCATION_REFRESH_S = 2.0
#: Most report views kept in the in-process cache.
MAX_CACHED_VIEWS = 10_000
#: Seconds a finished view is answered from its cache before it is rebuilt from the rows
#: regardless of the change stamp (bounds anything the triggers cannot see, such as a
#: database restored from a backup or a witness record added later under a sample).
VIEW_MAX_AGE_S = 60.0
#: Age at which a cached view is rebuilt and re-checked in the background.
VIEW_RECHECK_S = 45.0
#: Locks that make concurrent builds of one view wait for each other (striped by code).
BUILD_STRIPES = 64
#: Most raw code spellings remembered with their canonical form.
MAX_CODE_SPELLINGS = 50_000


class UnknownCode(Exception):
    """No report code of that form was ever issued."""


@dataclass
class ReportView:
    code: str
    status: Status
    data: dict[str, Any]
    #: `data` as JSON bytes (what `GET /api/v1/public/reports/{code}` answers).
    json: bytes = b""
    #: What the view was built from: the head read (code row, stamp, armed triggers)...
    head: tuple[Any, ...] = field(repr=False, default=())
    #: ...the checks...
    checked: Checked | None = field(repr=False, default=None)
    #: ...and when the revocation it shows was read (ChainReader), if it was.
    revocation_read_at: float | None = field(repr=False, default=None)
    revocation_key: tuple[Any, ...] = field(repr=False, default=())
    #: Whether the change stamp could be trusted when the head was read.
    armed: bool = False


class ReportViews:
    """Builds report views; one per service process (`ServiceState.views`)."""

    def __init__(
        self,
        blobs: BlobStore,
        chain: ChainReader | None,
        signature_check: SignatureCheck | None,
        base_url: str,
        *,
        stamp: StampReader | None = None,
        verdicts: SignatureVerdicts | None = None,
        log_hash: HashAlg = DEFAULT_ALG,
    ) -> None:
        self.blobs = blobs
        self.checker = Checker(blobs, chain, log_hash)
        self.chain = chain
        self.signature_check = signature_check
        self.base_url = base_url.rstrip("/")
        self.stamp = stamp
        self.verdicts = verdicts
        #: (code, sha256, file stat) -> (verdict, time.time() it was made)
        self._signatures: dict[tuple[str, str, FileStat | None], tuple[Signature, float]] = {}
        self._views: dict[str, ReportView] = {}
        self._spellings: dict[str, str | None] = {}
        #: Rebuilds the view of a code off the request path (set by the service; it opens
        #: a session and calls `view(session, code, refresh=True)`).
        self.refresher: Callable[[str], object] | None = None
        self._refreshing: set[str] = set()
        self._refresh_pool: ThreadPoolExecutor | None = None
        self._refresh_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(BUILD_STRIPES)]
        self._pending: set[Future[None]] = set()
        #: Views answered from the cache without any check redone, for tests and the bench.
        self.cached_answers = 0
        #: Full PDF signature validations views made, for tests and the bench.
        self.signature_validations = 0
        #: Sealed PDFs validated by the sealing step (`prime_signature`).
        self.signatures_primed = 0

    def clear(self) -> None:
        """Forget every cached check in this process (the bench's uncached path); stored
        signature verdicts stay (see SignatureVerdicts)."""
        self.checker.clear()
        self._signatures.clear()
        self._views.clear()

    def canonical(self, code_text: str) -> str | None:
        """The canonical form of a code as typed, or None when it cannot be a code
        (`codes.canonical_or_none`, remembered per spelling)."""
        canonical = self._spellings.get(code_text, "")
        if canonical != "":
            return canonical
        canonical = canonical_or_none(code_text)
        if len(self._spellings) >= MAX_CODE_SPELLINGS:
            self._spellings.clear()
        self._spellings[code_text] = canonical
        return canonical

    # -- the cached answer (no check redone) --------------------------------------------

    def last_view(self, code: str) -> ReportView | None:
        """The view of canonical `code` built last, whether or not it still holds."""
        return self._views.get(code)

    def cached_view(self, code: str) -> ReportView | None:
        """The cached view of canonical `code` if nothing it was checked against changed.

        Costs one small query (`StampReader`) and an `os.stat` per blob file; no network
        and no hashing, so the event loop may call it. None: build the view (`view`).
        """
        view = self._views.get(code)
        if view is None or self.stamp is None or not view.armed:
            return None
        checked = view.checked
        if checked is None or not checked.final:
            return None
        now = time.monotonic()
        if now - checked.checked_at >= VIEW_MAX_AGE_S:
            return None
        if self.chain is not None and not self.chain.revocation_fresh(
            code, view.revocation_read_at, now
        ):
            return None
        try:
            head = self.stamp.read(code)
        except Exception as exc:  # the slow path reports database trouble properly
            log.warning("change stamp read failed: %s", type(exc).__name__)
            return None
        if head != view.head or not checked.files_unchanged():
            return None
        if now - checked.checked_at >= VIEW_RECHECK_S or (
            view.revocation_read_at is not None
            and now - view.revocation_read_at >= REVOCATION_REFRESH_S
        ):
            self._refresh_soon(code)
        self.cached_answers += 1
        return view

    def building(self, code: str) -> threading.Lock:
        """The lock a caller holds while it builds the view of `code`, taken before it opens
        a database session: concurrent requests for a view being built wait for it (and
        then find it cached) instead of all checking the same records at once."""
        return self._stripes[hash(code) % BUILD_STRIPES]

    def _pool(self) -> ThreadPoolExecutor:
        with self._refresh_lock:
            if self._refresh_pool is None:
                self._refresh_pool = ThreadPoolExecutor(2, thread_name_prefix="jz-view-refresh")
            return self._refresh_pool

    def _background(self, fn: Callable[..., object], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.warning("background %s failed", getattr(fn, "__name__", fn), exc_info=True)

        future = self._pool().submit(run)
        with self._refresh_lock:
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the background work started so far (stores, refreshes)."""
        with self._refresh_lock:
            pending = list(self._pending)
        wait(pending, timeout=timeout)

    def _refresh_soon(self, code: str) -> None:
        """Rebuild the view of `code` in the background, once at a time per code."""
        if self.refresher is None:
            return
        refresher = self.refresher
        with self._refresh_lock:
            if code in self._refreshing:
                return
            self._refreshing.add(code)
        pool = self._pool()

        def run() -> None:
            try:
                refresher(code)
            except Exception:
                log.warning("refreshing the view of %s failed", code, exc_info=True)
            finally:
                with self._refresh_lock:
                    self._refreshing.discard(code)

        future = pool.submit(run)
        with self._refresh_lock:
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def cached_json(self, code_text: str) -> bytes | None:
        """`cached_view` of a code as typed, as JSON bytes."""
        code = self.canonical(code_text)
        if code is None:
            return None
        view = self.cached_view(code)
        return view.json if view is not None else None

    # -- signature ----------------------------------------------------------------------

    def _signature(
        self, conn: Connection, code: str, sealed_sha: str, size: int
    ) -> tuple[Signature, FileSeen]:
        """The sealed PDF's verdict, and the file as it was when its hash was checked."""
        ok, seen = self.checker.file_ok(sealed_sha, size)
        if self.signature_check is None:
            return (
                Signature(checked=False, ok=False, detail="signature checking not configured"),
                seen,
            )
        if not ok:
            detail = "the sealed PDF is missing or differs from its anchored SHA-256"
            return Signature(checked=True, ok=False, detail=detail), seen
        path, stat = seen
        key = (code, sealed_sha, stat)
        now = time.time()
        memo = self._signatures.get(key)
        if memo is not None and now - memo[1] < SIGNATURE_VERDICT_MAX_AGE_S:
            return memo[0], seen
        stored = self.verdicts.load(conn, sealed_sha, code) if self.verdicts else None
        if stored is not None:
            sig, made_at = stored
        else:
            sig = self._validate(code, sealed_sha, path)
            made_at = now
            if self.verdicts is not None and sig.checked:
                self._background(self.verdicts.store, sealed_sha, code, sig)
        if len(self._signatures) >= MAX_CACHED_VIEWS:
            self._signatures.clear()
        self._signatures[key] = (sig, made_at)
        return sig, seen

    def _validate(self, code: str, sealed_sha: str, path: str) -> Signature:
        assert self.signature_check is not None
        self.signature_validations += 1
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            if hashlib.sha256(data).hexdigest() != sealed_sha:
                return Signature(checked=True, ok=False, detail="sealed PDF changed while read")
            return self.signature_check(data, code, sealed_sha)
        except Exception as exc:  # a broken file is a failed check, not a crash
            log.warning("signature check of %s failed: %s", code, type(exc).__name__)
            return Signature(checked=True, ok=False, detail="sealed PDF unreadable")

    def prime_signature(self, code: str, sealed_sha: str, data: bytes) -> Signature | None:
        """Validate a freshly sealed PDF and store its verdict (the sealing step's result
        under the rule of SignatureVerdicts)."""
        if self.signature_check is None or self.verdicts is None:
            return None
        if hashlib.sha256(data).hexdigest() != sealed_sha:
            return None
        self.signatures_primed += 1
        sig = self.signature_check(data, code, sealed_sha)
        self.verdicts.store(sealed_sha, code, sig)
        return sig

    # -- the view -------------------------------------------------------------------------

    def view(self, session: Session, code: str, *, refresh: bool = False) -> ReportView:
        """The checked view of `code` (canonical form); raises UnknownCode.

        `refresh`: a background rebuild ahead of expiry: re-read the revocation and, when
        the checks are VIEW_RECHECK_S old, redo them."""
        if not refresh:
            cached = self.cached_view(code)
            if cached is not None:
                return cached
        conn = session.connection()
        dialect = conn.dialect.name
        head = read_head(conn, code)  # before any record is read: a later change moves it
        if head is None:
            raise UnknownCode(code)
        armed = self.stamp is not None and stamp_armed(dialect, head)
        row = CodeRow.of_head(head)
        prev = self._views.get(code)
        checked: Checked | None = None
        if (
            prev is not None
            and armed
            and prev.armed
            and prev.head == head
            and prev.checked is not None
            and prev.checked.final
            and time.monotonic() - prev.checked.checked_at < VIEW_RECHECK_S
            and prev.checked.files_unchanged()
        ):
            checked = prev.checked  # only the revocation is read again
        else:
            checked = self._check(session, row)

        revocation_chain: RevocationInfo | None = None
        chain_revocation_error: str | None = None
        revocation_read_at: float | None = None
        if self.chain is not None:
            try:
                revocation_chain = self.chain.revocation(
                    code, REVOCATION_REFRESH_S if refresh else None
                )
                revocation_read_at = self.chain.revocation_read_at(code)
            except ChainError as exc:
                chain_revocation_error = exc.message
        revocation_key = (revocation_chain, chain_revocation_error is not None)

        if prev is not None and prev.checked is checked and prev.revocation_key == revocation_key:
            data, status, body = prev.data, prev.status, prev.json
        else:
            status, data = build_view_data(checked, revocation_chain, self.base_url)
            body = orjson.dumps(data)
        view = ReportView(
            code=code,
            status=status,
            data=data,
            json=body,
            head=head,
            checked=checked,
            revocation_read_at=revocation_read_at,
            revocation_key=revocation_key,
            armed=armed,
        )
        if len(self._views) >= MAX_CACHED_VIEWS and code not in self._views:
            self._views.clear()
        self._views[code] = view
        return view

    def _check(self, session: Session, row: CodeRow) -> Checked:
        """Every check of the report's records and its sealed PDF."""
        conn = session.connection()
        final_id = row.pdf_record_id or row.report_record_id or row.issue_record_id
        roots = [final_id, *history_record_ids(session, row.code)]
        if row.revocation_record_id:
            roots.append(row.revocation_record_id)
        records, parents = load_ancestry(session, roots)

        leaf_cache: dict[int, list[str]] = {}

        def batch_leaves(seq: int) -> list[str]:
            if seq not in leaf_cache:
                leaf_cache[seq] = read_batch_leaves(conn, seq)
            return leaf_cache[seq]

        checks: dict[str, RecordCheck] = {}
        bodies: dict[str, Mapping[str, Any]] = {}
        files: list[FileSeen] = []
        for rec in records.values():
            parent_leaves = tuple(
                records[p].leaf_hash if p in records else "" for p in parents.get(rec.id, ())
            )
            checks[rec.id], bodies[rec.id], seen = self.checker.check(
                rec, parent_leaves, batch_leaves
            )
            files.extend(seen)

        # Pending only while the evidence can still be anchored: the chain's batchCount
        # beyond the last batch the database knows means anchored batches were dropped, and
        # a record waiting now may be one of theirs put back in the queue (the worker could
        # never anchor it: the next sequence number is taken).
        all_final = all(
            c.state in ("verified", "failed") and not c.lost for c in checks.values()
        )
        if any(c.state == "pending" for c in checks.values()):
            self._fail_pending_if_batches_dropped(conn, checks)

        final = records.get(final_id)
        sealed_sha = None
        sealed_size = -1
        if final is not None and row.pdf_record_id:
            for role, sha, size in files_of(safe_obj(final.canonical)):
                if role == "signed_pdf":
                    sealed_sha, sealed_size = sha, size
        signature = None
        if sealed_sha:
            signature, seen_pdf = self._signature(conn, row.code, sealed_sha, sealed_size)
            files.append(seen_pdf)
        history_missing = tuple(
            custody.missing_history(
                [
                    obj
                    for rec in records.values()
                    if rec.type == "report" and (obj := safe_obj(rec.canonical))
                    and obj.get("body", {}).get("code") == row.code
                ],
                {rec.leaf_hash: {} for rec in records.values()},
            )
        )
        return Checked(
            row=row,
            records=records,
            parents=parents,
            checks=checks,
            bodies=bodies,
            signature=signature,
            sealed_sha=sealed_sha,
            files=tuple(dict.fromkeys(files)),
            # a judgement resting on a pending record, or on a record gone from the
            # database (putting it back is an INSERT, which moves no stamp), is redone
            # on every view
            final=all_final and not history_missing,
            history_missing=history_missing,
            checked_at=time.monotonic(),
        )

    def _fail_pending_if_batches_dropped(
        self, conn: Connection, checks: dict[str, RecordCheck]
    ) -> None:
        """Turn the pending checks into failed ones when the chain holds batches the
        database does not (read only for a view that has something pending)."""
        if self.chain is None:
            return
        try:
            on_chain = self.chain.batch_count()
        except ChainError:
            return  # cannot tell: the records stay pending
        known = read_known_batches(conn)
        if on_chain <= known:
            return
        en = (
            f"the chain has anchored {on_chain} batches, the database knows {known}: anchored "
            "batches were deleted, so this record is not pending"
        )
        zh = (
            f"链上已有 {on_chain} 个上链批次，数据库仅存 {known} 个"
            "（上链批次被删除），该记录并非待上链"
        )
        for rid, check in list(checks.items()):
            if check.state == "pending":
                checks[rid] = RecordCheck(rid, check.type, "failed", en, zh, lost=True)


def build_report_views(
    settings: Settings,
    engine: Engine,
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    chain_info: ChainInfo | None,
) -> ReportViews:
    """The public views of one process, checking signatures against the platform roots."""
    chain = None
    if chain_info is not None:
        chain = ChainReader(chain_info.rpc_url, chain_info.registry, chain_info.chain_id)
    checker = SignatureChecker(settings)
    master_key = settings.security.master_key.get_secret_value().encode()
    views = ReportViews(
        blobs,
        chain,
        checker,
        settings.public.base_url,
        stamp=StampReader(engine),
        verdicts=SignatureVerdicts(engine, master_key, checker.context),
        log_hash=loghash.of(engine),
    )

    def rebuild(code: str) -> None:
        """Rebuild a cached view ahead of its expiry (ReportViews.refresher)."""
        with views.building(code), sessions() as session:
            try:
                views.view(session, code, refresh=True)
            except UnknownCode:
                pass
            finally:
                session.rollback()

    views.refresher = rebuild
    return views


def report_view(
    views: ReportViews, sessions: sessionmaker[Session], code: str
) -> ReportView | None:
    """The checked view of a report, or None for a code never issued."""
    canonical = views.canonical(code)
    if canonical is None:
        return None
    cached = views.cached_view(canonical)
    if cached is not None:
        return cached
    with views.building(canonical):
        cached = views.cached_view(canonical)  # built meanwhile by the request we waited for
        if cached is not None:
            return cached
        with sessions() as session:
            try:
                return views.view(session, canonical)
            except UnknownCode:
                return None
            finally:
                session.rollback()


def prime_verdict(
    views: ReportViews, executor: ThreadPoolExecutor, code: str, sha256: str, data: bytes
) -> None:
    """Validate a freshly signed PDF off the request path and store its verdict, so the
    first public view of the report need not parse the PDF (SignatureVerdicts' rule).
    Any failure only means the first view validates it."""

    def work() -> None:
        try:
            views.prime_signature(code, sha256, data)
        except Exception:
            log.warning("priming the signature verdict of %s failed", code, exc_info=True)

    executor.submit(work)
