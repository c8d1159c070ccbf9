"""Inclusion proofs (`jianzheng-proof/1`, INTERFACE.md §3) served from stored data.

A proof is built from what the database holds: the record's canonical bytes, the leaf
hash that went into its batch, the batch's leaves (for the audit path) and the anchor
the worker recorded. Nothing here consults the chain, and nothing is "fixed up": if a
row was edited after anchoring, the proof shows the edited data and the verifier names
the record whose hash no longer matches.

The tree levels of a batch are cached (batches are immutable once anchored), so serving
every proof of a 20,000-leaf batch rebuilds its tree once.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service.anchoring.chaininfo import ChainInfo
from service.errors import IntegrityFault, JianzhengError, NotFound
from service.storage import loghash
from service.storage.leaves import batch_leaf_hashes, batch_of_leaf, leaf_index
from service.storage.models import Batch, Outbox, Record
from verifier.merkle import DEFAULT_ALG, HashAlg, audit_path_from_levels, tree_levels
from verifier.proof import PROOF_FORMAT

#: Cached tree levels are kept for at most this many leaves in total (~65 bytes per hash,
#: about two hashes per leaf: 1,000,000 leaves ~ 130 MB worst case).
CACHE_MAX_LEAVES = 1_000_000

_cache: OrderedDict[tuple[str, str, int], list[list[bytes]]] = OrderedDict()
_cache_leaves = 0
_cache_lock = threading.Lock()


def _levels(
    session: Session, seq: int, root: str, size: int, alg: HashAlg
) -> list[list[bytes]]:
    """The tree levels of batch `seq` from its stored leaves (cached by root and size)."""
    global _cache_leaves
    key = (alg, root, size)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    hexes = session.scalars(batch_leaf_hashes(seq)).all()
    levels = tree_levels([bytes.fromhex(h) for h in hexes], alg)
    with _cache_lock:
        _cache[key] = levels
        _cache_leaves += len(hexes)
        while _cache_leaves > CACHE_MAX_LEAVES and len(_cache) > 1:
            _, dropped = _cache.popitem(last=False)
            _cache_leaves -= len(dropped[0])
    return levels


def proof_hash_field(alg: HashAlg) -> dict[str, str]:
    """The top-level `hash` of a proof or bundle (§7.7): absent for SHA-256."""
    return {} if alg == DEFAULT_ALG else {"hash": alg}


def clear_cache() -> None:
    global _cache_leaves
    with _cache_lock:
        _cache.clear()
        _cache_leaves = 0


def record_json(record_id: str, canonical: bytes) -> dict[str, Any]:
    """The evidence record object exactly as stored (its canonical bytes, parsed)."""
    try:
        obj = json.loads(canonical)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityFault(
            "record_corrupt", f"stored bytes of record {record_id} are not JSON"
        ) from exc
    if not isinstance(obj, dict):
        raise IntegrityFault(
            "record_corrupt", f"stored bytes of record {record_id} are not an object"
        )
    return obj


#: Ids per query in build_proofs.
_QUERY_CHUNK = 500
#: Built once: constructing the statement costs more than running it.
_PROOF_QUERY = (
    select(
        Record.id,
        Record.canonical,
        leaf_index().label("leaf_index"),
        Outbox.leaf_hash,
        Batch.seq,
        Batch.root,
        Batch.size,
        Batch.status,
        Batch.chain_id,
        Batch.registry_address,
        Batch.tx_hash,
        Batch.block_number,
        Batch.block_timestamp,
    )
    .select_from(Record)
    .outerjoin(Outbox, Outbox.record_id == Record.id)
    .outerjoin(Batch, batch_of_leaf())
    .where(Record.id.in_(bindparam("ids", expanding=True)))
)


def build_proofs(
    session: Session,
    record_ids: Sequence[str],
    chain: ChainInfo | None,
    *,
    failures: dict[str, Exception] | None = None,
) -> dict[str, dict[str, Any] | None]:
    """Proofs of many records at once (e.g. a bundle): id -> proof, or None while pending.

    Raises JianzhengError 404 `record_not_found` naming the first unknown id; a proof that
    cannot be built from what is stored (bytes that are not a JSON object: IntegrityFault;
    batch leaves that no longer build its tree: ValueError, IndexError) raises too. With
    `failures`, none of these raise: the record is left out of the answer and named there
    with its error, and the other proofs are still built.
    """
    found: dict[str, Any] = {}
    unique = list(dict.fromkeys(record_ids))
    for i in range(0, len(unique), _QUERY_CHUNK):
        chunk = unique[i : i + _QUERY_CHUNK]
        rows = session.execute(_PROOF_QUERY, {"ids": chunk}).all()
        found.update((row.id, row) for row in rows)
    proofs: dict[str, dict[str, Any] | None] = {}
    for rid in unique:
        row = found.get(rid)
        if row is None:
            missing = NotFound("record_not_found", f"no record {rid!r}")
            if failures is None:
                raise missing
            failures[rid] = missing
            continue
        if row.seq is None or row.status != "anchored":
            proofs[rid] = None  # still in the outbox, or its batch is not anchored yet
            continue
        try:
            proofs[rid] = _proof(session, rid, row, chain)
        except (JianzhengError, ValueError, IndexError) as exc:
            if failures is None:
                raise
            failures[rid] = exc
    return proofs


def _proof(session: Session, rid: str, row: Any, chain: ChainInfo | None) -> dict[str, Any]:
    """The proof of one anchored record from its row of `_PROOF_QUERY`."""
    alg = loghash.of(session)
    levels = _levels(session, row.seq, row.root, row.size, alg)
    path = audit_path_from_levels(levels, row.leaf_index)
    chain_id = row.chain_id if row.chain_id is not None else (chain.chain_id if chain else 0)
    registry = row.registry_address or (chain.registry if chain else "")
    return {
        "format": PROOF_FORMAT,
        **proof_hash_field(alg),
        "record": record_json(rid, row.canonical),
        "leaf_hash": row.leaf_hash,
        "batch": {
            "seq": row.seq,
            "tree_size": row.size,
            "leaf_index": row.leaf_index,
            "root": row.root,
            "path": [p.hex() for p in path],
        },
        "anchor": {
            "chain_id": chain_id,
            "registry": registry,
            "tx_hash": row.tx_hash,
            "block_number": row.block_number,
            "block_timestamp": row.block_timestamp,
        },
    }


def build_proof(session: Session, record_id: str, chain: ChainInfo | None) -> dict[str, Any] | None:
    """The proof of record `record_id`, or None while it is not anchored yet.

    Raises JianzhengError 404 `record_not_found` for an unknown id. A batch records the chain
    id and registry it was anchored to and that is what the proof names; `chain` is only a
    fallback for rows without them.
    """
    return build_proofs(session, [record_id], chain)[record_id]
