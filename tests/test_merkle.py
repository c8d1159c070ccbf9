"""RFC 6962 Merkle trees: vectors, an independent reference implementation, properties."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.errors import InvalidProof
from verifier.merkle import (
    MAX_PATH_LEN,
    audit_path,
    audit_path_from_levels,
    expected_path_length,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_path,
    tree_levels,
    verify_inclusion,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "merkle.json").read_text("utf-8"))


# --- an independent, literal transcription of RFC 6962 §2.1 -------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k  # the largest power of two smaller than n


def ref_mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) over raw entries (leaf hashing included)."""
    n = len(entries)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + entries[0])
    k = _split(n)
    return _sha(b"\x01" + ref_mth(entries[:k]) + ref_mth(entries[k:]))


def ref_path(m: int, entries: list[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    n = len(entries)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return ref_path(m, entries[:k]) + [ref_mth(entries[k:])]
    return ref_path(m - k, entries[k:]) + [ref_mth(entries[:k])]


def ref_root_from_hashes(hashes: list[bytes]) -> bytes:
    """MTH over already hashed leaves."""
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return _sha(b"\x01" + ref_root_from_hashes(hashes[:k]) + ref_root_from_hashes(hashes[k:]))


def entries(n: int) -> list[bytes]:
    return [str(i).encode() for i in range(n)]


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(e) for e in entries(n)]


# --- known vectors --------------------------------------------------------------------------

# The Certificate Transparency reference test inputs and roots (RFC 6962 test data).
CT_INPUTS = [
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATH_0_OF_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]


def test_certificate_transparency_vectors() -> None:
    data = [bytes.fromhex(h) for h in CT_INPUTS]
    hashed = [leaf_hash(d) for d in data]
    for n in range(1, 9):
        assert merkle_root(hashed[:n]).hex() == CT_ROOTS[n - 1]
        assert ref_mth(data[:n]).hex() == CT_ROOTS[n - 1]
    assert [p.hex() for p in audit_path(hashed, 0)] == CT_PATH_0_OF_8
    assert verify_inclusion(hashed[0], 0, 8, audit_path(hashed, 0), bytes.fromhex(CT_ROOTS[7]))


def test_empty_tree_and_single_leaf() -> None:
    assert merkle_root([]) == hashlib.sha256(b"").digest()
    one = leaf_hash(b"x")
    assert merkle_root([one]) == one
    assert audit_path([one], 0) == []
    assert verify_inclusion(one, 0, 1, [], one)


def test_hash_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert merkle_root([a, b]) == node_hash(a, b) != node_hash(b, a)


@pytest.mark.parametrize("tree", VECTORS["trees"], ids=lambda t: f"size{t['size']}")
def test_checked_in_vectors(tree: dict[str, object]) -> None:
    n = tree["size"]
    assert isinstance(n, int)
    data = entries(n)
    hashed = leaves(n)
    levels = tree_levels(hashed)
    assert merkle_root(hashed).hex() == tree["root"]
    assert ref_mth(data).hex() == tree["root"]
    paths = tree["paths"]
    assert isinstance(paths, dict)
    if n <= 17:
        assert sorted(int(i) for i in paths) == list(range(n))
    root = bytes.fromhex(tree["root"])
    for index_text, expected in paths.items():
        index = int(index_text)
        path = audit_path(hashed, index)
        assert [p.hex() for p in path] == expected
        assert [p.hex() for p in ref_path(index, data)] == expected
        assert audit_path_from_levels(levels, index) == path
        assert len(path) == expected_path_length(index, n)
        assert verify_inclusion(hashed[index], index, n, path, root)
        assert root_from_path(hashed[index], index, n, path) == root


def test_all_paths_sizes_1_to_64_match_reference() -> None:
    for n in range(1, 65):
        data = entries(n)
        hashed = leaves(n)
        root = merkle_root(hashed)
        assert root == ref_mth(data)
        for i in range(n):
            path = audit_path(hashed, i)
            assert path == ref_path(i, data)
            assert verify_inclusion(hashed[i], i, n, path, root)


def test_large_tree_matches_reference() -> None:
    hashed = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(200_000)]
    assert merkle_root(hashed) == ref_root_from_hashes(hashed)


# --- shape errors ---------------------------------------------------------------------------


def test_bad_shapes_raise_and_do_not_verify() -> None:
    hashed = leaves(5)
    root = merkle_root(hashed)
    path = audit_path(hashed, 2)
    cases = [
        (hashed[2], 5, 5, path),  # index == size
        (hashed[2], -1, 5, path),  # negative index
        (hashed[2], 2, 0, path),  # empty tree
        (hashed[2], 2, 5, path[:-1]),  # too short
        (hashed[2], 2, 5, path + [root]),  # too long
        (hashed[2], 2, 5, [path[0][:31]] + path[1:]),  # short hash
        (hashed[2][:31], 2, 5, path),  # short leaf
        (hashed[2], 2, 2**64, path),  # beyond uint64
        (hashed[2], 2, 5, [root] * (MAX_PATH_LEN + 1)),  # over the limit
    ]
    for leaf, index, size, bad_path in cases:
        with pytest.raises(InvalidProof) as info:
            root_from_path(leaf, index, size, bad_path)
        assert info.value.code == "bad_path_shape"
        assert verify_inclusion(leaf, index, size, bad_path, root) is False


def test_builders_reject_bad_leaves() -> None:
    with pytest.raises(ValueError):
        merkle_root([b"short"])
    with pytest.raises(ValueError):
        tree_levels([])
    with pytest.raises(ValueError):
        audit_path(leaves(3), 3)


def test_tree_size_alone_is_not_bound_by_the_path() -> None:
    """Why the anchor check compares tree_size with the registry's leafCount: RFC 6962 audit
    paths do not bind the tree size on their own (leaf 0 of 3 and of 4 take the same steps)."""
    hashed = leaves(3)
    path = audit_path(hashed, 0)
    root = merkle_root(hashed)
    assert verify_inclusion(hashed[0], 0, 3, path, root)
    assert verify_inclusion(hashed[0], 0, 4, path, root)
    assert not verify_inclusion(hashed[0], 0, 5, path, root)


# --- properties -------------------------------------------------------------------------------


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    n = draw(st.integers(min_value=1, max_value=150))
    seed = draw(st.binary(min_size=4, max_size=4))
    hashed = [hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(n)]
    return hashed, draw(st.integers(min_value=0, max_value=n - 1))


def _flip(value: bytes, position: int, bit: int) -> bytes:
    out = bytearray(value)
    out[position % len(out)] ^= 1 << bit
    return bytes(out)


@given(tree_and_index())
@settings(max_examples=200, deadline=None)
def test_every_path_verifies(case: tuple[list[bytes], int]) -> None:
    hashed, index = case
    root = merkle_root(hashed)
    path = audit_path(hashed, index)
    assert len(path) == expected_path_length(index, len(hashed))
    assert root_from_path(hashed[index], index, len(hashed), path) == root
    assert path == ref_path_from_hashes(index, hashed)


def ref_path_from_hashes(m: int, hashes: list[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if m < k:
        return ref_path_from_hashes(m, hashes[:k]) + [ref_root_from_hashes(hashes[k:])]
    return ref_path_from_hashes(m - k, hashes[k:]) + [ref_root_from_hashes(hashes[:k])]


@given(tree_and_index(), st.integers(min_value=0), st.integers(min_value=0, max_value=7))
@settings(max_examples=200, deadline=None)
def test_changed_leaf_fails(case: tuple[list[bytes], int], position: int, bit: int) -> None:
    hashed, index = case
    root = merkle_root(hashed)
    path = audit_path(hashed, index)
    assert not verify_inclusion(_flip(hashed[index], position, bit), index, len(hashed), path,
                                root)
    assert not verify_inclusion(hashed[index], index, len(hashed), path,
                                _flip(root, position, bit))


@given(tree_and_index(), st.data())
@settings(max_examples=200, deadline=None)
def test_changed_path_element_fails(case: tuple[list[bytes], int], data: st.DataObject) -> None:
    hashed, index = case
    path = audit_path(hashed, index)
    if not path:
        return
    which = data.draw(st.integers(min_value=0, max_value=len(path) - 1))
    position = data.draw(st.integers(min_value=0, max_value=31))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    tampered = list(path)
    tampered[which] = _flip(tampered[which], position, bit)
    assert not verify_inclusion(hashed[index], index, len(hashed), tampered, merkle_root(hashed))


@given(tree_and_index(), st.data())
@settings(max_examples=200, deadline=None)
def test_changed_index_fails(case: tuple[list[bytes], int], data: st.DataObject) -> None:
    hashed, index = case
    n = len(hashed)
    other = data.draw(st.integers(min_value=-1, max_value=n + 2).filter(lambda i: i != index))
    path = audit_path(hashed, index)
    assert not verify_inclusion(hashed[index], other, n, path, merkle_root(hashed))


@given(tree_and_index(), st.data())
@settings(max_examples=200, deadline=None)
def test_changed_size_fails_unless_the_path_is_shared(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    hashed, index = case
    n = len(hashed)
    other = data.draw(st.integers(min_value=0, max_value=2 * n + 2).filter(lambda m: m != n))
    path = audit_path(hashed, index)
    if verify_inclusion(hashed[index], index, other, path, merkle_root(hashed)):
        # Possible only when the leaf is reached by the same steps in both shapes (leaf 0 of
        # 3 and of 4): audit paths do not bind the size, the anchor check does.
        assert other > index
        assert expected_path_length(index, other) == len(path)
    # Sizes that change the path's shape always fail.
    if 0 < other and index < other and expected_path_length(index, other) != len(path):
        assert not verify_inclusion(hashed[index], index, other, path, merkle_root(hashed))
