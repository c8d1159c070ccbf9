// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/**
 * @title EvidenceRegistry
 * @notice Append-only registry of Jianzheng batch Merkle roots and report revocations.
 * @dev Interface fixed by INTERFACE.md section 2. Batches are numbered 1, 2, 3, ... without gaps;
 * each root can be anchored once. A revocation subject can be revoked once. Nothing written here
 * can be changed or deleted afterwards, not even by the admin.
 */
contract EvidenceRegistry is AccessControl {
    /// @notice Role allowed to call {anchor}: `keccak256("ANCHORER_ROLE")`.
    bytes32 public constant ANCHORER_ROLE = keccak256("ANCHORER_ROLE");
    /// @notice Role allowed to call {revoke}: `keccak256("REVOKER_ROLE")`.
    bytes32 public constant REVOKER_ROLE = keccak256("REVOKER_ROLE");

    /// @dev One storage slot: 4 x uint64. `seq == 0` means "not anchored" (sequences start at 1).
    struct AnchorRecord {
        uint64 seq;
        uint64 leafCount;
        uint64 timestamp;
        uint64 blockNumber;
    }

    /// @dev `timestamp == 0` means "not revoked".
    struct RevocationRecord {
        bytes32 reason;
        uint64 timestamp;
    }

    uint64 private _batchCount;
    mapping(bytes32 root => AnchorRecord) private _anchors;
    mapping(bytes32 subject => RevocationRecord) private _revocations;

    /// @notice Batch `seq` with Merkle root `root` over `leafCount` leaves was anchored.
    event Anchored(uint64 indexed seq, bytes32 indexed root, uint64 leafCount, uint64 timestamp);

    /// @notice `subject` was revoked; `reason` is the leaf hash of the revocation record.
    event Revoked(bytes32 indexed subject, bytes32 reason, uint64 timestamp);

    /// @notice `anchor` was called with a sequence number other than `batchCount() + 1`.
    error EvidenceRegistrySequenceGap(uint64 expected, uint64 got);

    /// @notice `root` has already been anchored.
    error EvidenceRegistryDuplicateRoot(bytes32 root);

    /// @notice `anchor` was called with a leaf count of zero.
    error EvidenceRegistryEmptyBatch();

    /// @notice `subject` has already been revoked.
    error EvidenceRegistryAlreadyRevoked(bytes32 subject);

    /**
     * @param admin Receives DEFAULT_ADMIN_ROLE (may grant and revoke the other roles).
     * @param anchorer Receives ANCHORER_ROLE.
     * @param revoker Receives REVOKER_ROLE.
     */
    constructor(address admin, address anchorer, address revoker) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(ANCHORER_ROLE, anchorer);
        _grantRole(REVOKER_ROLE, revoker);
    }

    /**
     * @notice Anchors the Merkle root of batch `seq`.
     * @dev Only ANCHORER_ROLE. Checks, in this order: the root is new (so a retried, already
     * mined anchor fails with {EvidenceRegistryDuplicateRoot}), `seq == batchCount() + 1`,
     * `leafCount > 0`. Records the block timestamp and number and emits {Anchored}.
     * @param seq Batch sequence number; must be `batchCount() + 1`.
     * @param root RFC 6962 Merkle root of the batch's leaf hashes.
     * @param leafCount Number of leaves in the batch; must be positive.
     */
    function anchor(uint64 seq, bytes32 root, uint64 leafCount) external onlyRole(ANCHORER_ROLE) {
        if (_anchors[root].seq != 0) {
            revert EvidenceRegistryDuplicateRoot(root);
        }
        uint64 expected = _batchCount + 1;
        if (seq != expected) {
            revert EvidenceRegistrySequenceGap(expected, seq);
        }
        if (leafCount == 0) {
            revert EvidenceRegistryEmptyBatch();
        }
        uint64 timestamp = uint64(block.timestamp);
        _batchCount = seq;
        _anchors[root] = AnchorRecord({
            seq: seq,
            leafCount: leafCount,
            timestamp: timestamp,
            blockNumber: uint64(block.number)
        });
        emit Anchored(seq, root, leafCount, timestamp);
    }

    /**
     * @notice Revokes `subject` (for a report: SHA-256 of "jianzheng/report-code/" || CODE).
     * @dev Only REVOKER_ROLE. A subject can be revoked once; emits {Revoked}.
     * @param subject The revoked subject.
     * @param reason Leaf hash of the `revocation` evidence record.
     */
    function revoke(bytes32 subject, bytes32 reason) external onlyRole(REVOKER_ROLE) {
        if (_revocations[subject].timestamp != 0) {
            revert EvidenceRegistryAlreadyRevoked(subject);
        }
        uint64 timestamp = uint64(block.timestamp);
        _revocations[subject] = RevocationRecord({reason: reason, timestamp: timestamp});
        emit Revoked(subject, reason, timestamp);
    }

    /**
     * @notice Where and when `root` was anchored.
     * @param root A batch Merkle root.
     * @return seq Batch sequence number, 0 if `root` was never anchored (all fields are then 0).
     * @return leafCount Number of leaves in the batch.
     * @return timestamp Timestamp of the block that anchored it.
     * @return blockNumber Number of the block that anchored it.
     */
    function anchorOf(bytes32 root)
        external
        view
        returns (uint64 seq, uint64 leafCount, uint64 timestamp, uint64 blockNumber)
    {
        AnchorRecord storage record = _anchors[root];
        return (record.seq, record.leafCount, record.timestamp, record.blockNumber);
    }

    /**
     * @notice Whether and why `subject` was revoked.
     * @param subject A revocation subject.
     * @return reason Leaf hash of the revocation record, 0 if not revoked.
     * @return timestamp Timestamp of the block that revoked it, 0 if not revoked.
     */
    function revocationOf(bytes32 subject) external view returns (bytes32 reason, uint64 timestamp) {
        RevocationRecord storage record = _revocations[subject];
        return (record.reason, record.timestamp);
    }

    /**
     * @notice Number of batches anchored so far (the sequence number of the latest batch).
     * @return The latest anchored sequence number, 0 before the first anchor.
     */
    function batchCount() external view returns (uint64) {
        return _batchCount;
    }
}
