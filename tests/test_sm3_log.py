"""An SM3 evidence log (§7.7): leaves and nodes hashed with SM3 (GB/T 32905) under the same
domain separation as SHA-256; proofs say `"hash": "sm3"`; a proof of one kind read as the
other fails clearly."""

from __future__ import annotations

import copy
import hashlib

import pytest

from tests.proof_builder import ancestry_records, build_proofs
from verifier.errors import InvalidProof
from verifier.merkle import (
    hasher,
    leaf_hash,
    merkle_root,
    node_hash,
    record_leaf_hash,
    root_from_path,
    tree_levels,
    verify_inclusion,
)
from verifier.proof import check_inclusion, check_record_hash, parse_proof, proof_to_dict

#: GB/T 32905-2016 Appendix A.
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_sm3_test_vectors() -> None:
    assert hasher("sm3")(b"abc").hex() == SM3_ABC
    assert hasher("sm3")(b"abcd" * 16).hex() == SM3_ABCD16


def test_the_same_domain_separation_with_sm3() -> None:
    sm3 = hasher("sm3")
    assert leaf_hash(b"x", "sm3") == sm3(b"\x00x")
    a, b = b"\x11" * 32, b"\x22" * 32
    assert node_hash(a, b, "sm3") == sm3(b"\x01" + a + b)
    assert merkle_root([a, b], "sm3") == node_hash(a, b, "sm3")
    assert merkle_root([a, b]) == hashlib.sha256(b"\x01" + a + b).digest()
    assert merkle_root([], "sm3") == sm3(b"")
    with pytest.raises(ValueError):
        hasher("md5")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 33])
def test_sm3_audit_paths_verify(size: int) -> None:
    leaves = [hasher("sm3")(bytes([i])) for i in range(size)]
    levels = tree_levels(leaves, "sm3")
    root = levels[-1][0]
    from verifier.merkle import audit_path_from_levels

    for i in range(size):
        path = audit_path_from_levels(levels, i)
        assert root_from_path(leaves[i], i, size, path, "sm3") == root
        assert verify_inclusion(leaves[i], i, size, path, root, "sm3")
        if size > 1:
            assert not verify_inclusion(leaves[i], i, size, path, root)  # read as SHA-256


def test_an_sm3_proof_verifies_and_says_so() -> None:
    records = ancestry_records()
    proofs, _root = build_proofs(records, alg="sm3")
    proof = parse_proof(proofs[-1])
    assert proof.hash == "sm3"
    assert proof.leaf_hash == record_leaf_hash(records[-1], "sm3")
    assert check_record_hash(proof).ok and check_inclusion(proof).ok
    assert proof_to_dict(proof)["hash"] == "sm3"
    assert "hash" not in proof_to_dict(parse_proof(build_proofs(records)[0][-1]))


def test_a_proof_of_one_kind_read_as_the_other_fails_clearly() -> None:
    records = ancestry_records()
    sha_proof = build_proofs(records)[0][-1]
    relabelled = {**copy.deepcopy(sha_proof), "hash": "sm3"}
    check = check_record_hash(parse_proof(relabelled))
    assert not check.ok and "sm3" in check.detail and "log hash" in check.detail
    sm3_proof = build_proofs(records, alg="sm3")[0][-1]
    unlabelled = {k: v for k, v in sm3_proof.items() if k != "hash"}
    check = check_record_hash(parse_proof(unlabelled))
    assert not check.ok and "sha256" in check.detail
    with pytest.raises(InvalidProof) as err:
        parse_proof({**sha_proof, "hash": "sha3"})
    assert err.value.code == "unknown_hash"


def test_a_record_on_an_sm3_log_must_name_its_files_sm3() -> None:
    """§7.7: on an SM3 log every file entry carries `sm3`; the verifier fails one without
    it, and one whose SM3 is wrong, and accepts the right one."""
    from tests.proof_builder import ancestry_files
    from verifier.bundle import check_record_files

    files = ancestry_files(b"%PDF-1.7 signed report\n")
    sm3 = {sha: hasher("sm3")(data).hex() for sha, data in files.items()}

    def verdict(name_sm3: str | None) -> list[str]:
        records = copy.deepcopy(ancestry_records())
        for record in records:
            for entry in record.get("files", []):
                if name_sm3 == "right":
                    entry["sm3"] = sm3[entry["sha256"]]
                elif name_sm3 == "wrong":
                    entry["sm3"] = "00" * 32
        proofs = [parse_proof(p) for p in build_proofs(records, alg="sm3")[0]]
        checks = check_record_files(proofs, {s: s for s in files},
                                    {s: len(d) for s, d in files.items()}, sm3.__getitem__)
        return [c.detail for c in checks if not c.ok]

    assert verdict("right") == []
    assert any("names no SM3" in d for d in verdict(None))
    assert any("does not have the SM3" in d for d in verdict("wrong"))
