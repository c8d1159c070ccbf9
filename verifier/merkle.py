"""Evidence leaves and RFC 6962 Merkle trees.

``leaf_hash = H(0x00 || canonical_bytes)``; an interior node is ``H(0x01 || left || right)``;
the tree over n leaves splits at the largest power of two smaller than n (RFC 6962 §2.1).
Building level by level and promoting an unpaired last node unchanged gives exactly that
tree. Audit paths are listed leaf side first and verified with the algorithm of RFC 9162
§2.1.3.2. H is SHA-256 (INTERFACE §1) or, for a log that says so (``"hash": "sm3"``, §7.7),
SM3 (GB/T 32905); both give 32 bytes. Every function takes ``alg`` (default SHA-256).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from verifier.canonical import canonicalize
from verifier.errors import InvalidProof

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
#: Largest tree the verifier accepts: the registry stores the leaf count as a uint64.
MAX_TREE_SIZE = 2**64 - 1
#: Longest audit path: ceil(log2(MAX_TREE_SIZE)).
MAX_PATH_LEN = 64

HashAlg = Literal["sha256", "sm3"]
#: The log hashes a proof or bundle may name (§7.7); absent means SHA-256.
HASH_ALGS: tuple[HashAlg, ...] = ("sha256", "sm3")
DEFAULT_ALG: HashAlg = "sha256"


def _sm3(data: bytes) -> bytes:
    try:
        return hashlib.new("sm3", data).digest()
    except ValueError:  # an OpenSSL without SM3 in hashlib: the cryptography package has it
        from cryptography.hazmat.primitives import hashes

        h = hashes.Hash(hashes.SM3())
        h.update(data)
        return h.finalize()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hasher(alg: HashAlg = DEFAULT_ALG) -> Callable[[bytes], bytes]:
    """The digest function of a log hash (raises ValueError for an unknown name)."""
    if alg == "sha256":
        return _sha256
    if alg == "sm3":
        return _sm3
    raise ValueError(f"unknown log hash {alg!r}; expected one of {', '.join(HASH_ALGS)}")


def leaf_hash(canonical: bytes, alg: HashAlg = DEFAULT_ALG) -> bytes:
    """The evidence leaf of a record's canonical bytes."""
    return hasher(alg)(LEAF_PREFIX + canonical)


def record_leaf_hash(record: Mapping[str, Any], alg: HashAlg = DEFAULT_ALG) -> bytes:
    """The evidence leaf of a record: H(0x00 || RFC 8785 bytes of the record)."""
    return leaf_hash(canonicalize(record), alg)


def node_hash(left: bytes, right: bytes, alg: HashAlg = DEFAULT_ALG) -> bytes:
    """An interior node of the tree."""
    return hasher(alg)(NODE_PREFIX + left + right)


def _check_leaves(leaves: Sequence[bytes]) -> None:
    if len(leaves) > MAX_TREE_SIZE:
        raise ValueError(f"tree of {len(leaves)} leaves exceeds MAX_TREE_SIZE")
    for i, leaf in enumerate(leaves):
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf {i} is {len(leaf)} bytes, not {HASH_SIZE}")


def _next_level(level: Sequence[bytes], alg: HashAlg = DEFAULT_ALG) -> list[bytes]:
    prefix = NODE_PREFIX
    if alg == "sha256":
        sha256 = hashlib.sha256
        nxt = [
            sha256(prefix + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
    else:
        digest = hasher(alg)
        nxt = [digest(prefix + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        nxt.append(level[-1])  # promoted unchanged
    return nxt


def tree_levels(leaves: Sequence[bytes], alg: HashAlg = DEFAULT_ALG) -> list[list[bytes]]:
    """All levels of the tree, leaves first and the root level (one hash) last.

    Useful to produce every audit path of a batch without rehashing: see
    ``audit_path_from_levels``. ``leaves`` are leaf hashes and must not be empty.
    """
    if not leaves:
        raise ValueError("a tree needs at least one leaf")
    _check_leaves(leaves)
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        levels.append(_next_level(levels[-1], alg))
    return levels


def merkle_root(leaves: Sequence[bytes], alg: HashAlg = DEFAULT_ALG) -> bytes:
    """RFC 6962 Merkle Tree Hash of the leaf hashes ``leaves`` (in batch order).

    The root of the empty tree is H of the empty string, as RFC 6962 defines it
    (the registry never anchors an empty batch). A one-leaf tree's root is its leaf hash.
    """
    if not leaves:
        return hasher(alg)(b"")
    _check_leaves(leaves)
    level: Sequence[bytes] = leaves
    while len(level) > 1:
        level = _next_level(level, alg)
    return level[0]


def audit_path_from_levels(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` from precomputed ``tree_levels``, leaf side first."""
    size = len(levels[0])
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} outside a tree of {size} leaves")
    path: list[bytes] = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def audit_path(leaves: Sequence[bytes], index: int, alg: HashAlg = DEFAULT_ALG) -> list[bytes]:
    """RFC 6962 PATH(index, leaves): the sibling hashes from the leaf up to the root."""
    return audit_path_from_levels(tree_levels(leaves, alg), index)


def expected_path_length(index: int, tree_size: int) -> int:
    """How many hashes the audit path of ``index`` in a tree of ``tree_size`` holds."""
    if not 0 <= index < tree_size:
        raise ValueError(f"leaf index {index} outside a tree of {tree_size} leaves")
    length = 0
    last = tree_size - 1
    while last:
        if index ^ 1 <= last:
            length += 1
        index //= 2
        last //= 2
    return length


def root_from_path(
    leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], alg: HashAlg = DEFAULT_ALG
) -> bytes:
    """The root that ``path`` leads to from ``leaf`` at ``index`` (RFC 9162 §2.1.3.2).

    Raises InvalidProof (code ``bad_path_shape``) when the shape is wrong: index outside
    the tree, a size outside 1..MAX_TREE_SIZE, a hash that is not 32 bytes, or a path
    that is too short or too long for ``index`` and ``tree_size``.
    """
    if isinstance(index, bool) or isinstance(tree_size, bool):
        raise InvalidProof("leaf index and tree size must be integers", code="bad_path_shape")
    if not 1 <= tree_size <= MAX_TREE_SIZE:
        raise InvalidProof(f"tree size {tree_size} out of range", code="bad_path_shape")
    if not 0 <= index < tree_size:
        raise InvalidProof(
            f"leaf index {index} outside a tree of {tree_size} leaves", code="bad_path_shape"
        )
    if len(path) > MAX_PATH_LEN:
        raise InvalidProof(
            f"audit path of {len(path)} hashes exceeds {MAX_PATH_LEN}", code="bad_path_shape"
        )
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in path):
        raise InvalidProof("every hash must be 32 bytes", code="bad_path_shape")
    fn = index
    sn = tree_size - 1
    r = leaf
    for p in path:
        if sn == 0:
            raise InvalidProof(
                f"audit path too long for leaf {index} of {tree_size}", code="bad_path_shape"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r, alg)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p, alg)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof(
            f"audit path too short for leaf {index} of {tree_size}", code="bad_path_shape"
        )
    return r


def verify_inclusion(
    leaf: bytes,
    index: int,
    tree_size: int,
    path: Sequence[bytes],
    root: bytes,
    alg: HashAlg = DEFAULT_ALG,
) -> bool:
    """True when ``path`` proves ``leaf`` is leaf ``index`` of the tree with ``root``.

    A path of the wrong shape is simply not a proof: False, no exception.
    """
    try:
        computed = root_from_path(leaf, index, tree_size, path, alg)
    except InvalidProof:
        return False
    return computed == root
