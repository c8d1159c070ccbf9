"""The bundle checks ``verify_bundle`` runs after its built-in ones (``default_bundle_checks``).

``sealed_pdf_check``: every ``signed_pdf`` file a report record names is checked with
:func:`verifier.pdf.verify_sealed_pdf`: PAdES signature intact and valid, signer and
time-stamp chaining to the auditor's pinned trust roots, nothing appended after signing,
the QR code on every page naming the bundle's code, and the SHA-256 the record names.
Without pinned roots (``trust_roots=None``, said explicitly) the signature is checked for
integrity only, and a ``sealed_pdf_trust`` warning says so.

``witness_signature_check`` (``verifier.witness``): every seal's and witness record's
signature.

``batch_sequence_check``: the bundle against the chain's batch sequence. Every batch a
proof references must lie within ``1..batchCount()``. The manifest's additive ``batches``
field states, per batch, how many leaves the service's database holds now and the root they
build; these are compared with ``anchorOf(root)``: a leaf count or root that differs means
leaves of an anchored batch were deleted from (or added to) the database, and the finding
names the batch and both counts. The additive ``unproven`` field lists records the service
holds but could not prove; each is a failed check naming the record, and the chain's
``batchCount`` tells whether its batch was anchored (so it is not merely pending).
The additive fields are never trusted to pass anything: they only sharpen a failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from verifier.bundle import MAX_MANIFEST_BYTES, Bundle, BundleCheck
from verifier.canonical import loads_strict
from verifier.errors import CanonicalizationError, ChainError, InvalidBundle
from verifier.models import AnchorInfo, Check, Proof
from verifier.pdf import FindingCode, PdfUnreadable, load_trust_roots, verify_sealed_pdf
from verifier.witness import witness_signature_check

SIGNED_PDF_ROLE = "signed_pdf"
#: Largest trust-roots file read (PEM bundle).
MAX_TRUST_ROOTS_BYTES = 1024 * 1024
#: Findings that only say "not checked against pinned roots"; ignored without roots.
_TRUST_FINDINGS = frozenset({FindingCode.UNTRUSTED_CERTIFICATE, FindingCode.TIMESTAMP_INVALID})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BatchSource(Protocol):
    """The chain reads the batch-sequence check needs (``RpcClient`` has them)."""

    def batch_count(self, registry: str) -> int: ...

    def anchor_of(self, registry: str, root: bytes) -> AnchorInfo | None: ...


def read_trust_roots(path: str | Path) -> list[bytes]:
    """The PEM (or DER) certificates in ``path``; ValueError if unreadable or empty."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TRUST_ROOTS_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read trust roots {path}: {exc.strerror}") from None
    if len(data) > MAX_TRUST_ROOTS_BYTES:
        raise ValueError(f"trust roots file {path} exceeds {MAX_TRUST_ROOTS_BYTES} bytes")
    try:
        certs = load_trust_roots([data])
    except ValueError as exc:
        raise ValueError(f"trust roots {path}: {exc}") from None
    if not certs:
        raise ValueError(f"trust roots {path} holds no certificate")
    return [data]


def _check(name: str, ok: bool, detail: str, proof: Proof | None = None,
           warning: bool = False, record_id: str | None = None,
           record_type: str | None = None) -> Check:
    return Check(
        name=name,
        ok=ok,
        detail=detail,
        record_id=proof.record_id if proof else record_id,
        record_type=proof.record_type if proof else record_type,
        warning=warning,
    )


def _signed_pdfs(proof: Proof) -> list[str]:
    files = proof.record.get("files")
    out: list[str] = []
    for entry in files if isinstance(files, list) else []:
        if isinstance(entry, Mapping) and entry.get("role") == SIGNED_PDF_ROLE:
            sha = entry.get("sha256")
            if isinstance(sha, str) and _HEX64.match(sha):
                out.append(sha)
    return out


def default_bundle_checks(
    chain: BatchSource, registry: str | None, trust_roots: Sequence[bytes] | None
) -> tuple[BundleCheck, ...]:
    """The checks ``verify_bundle`` always runs after its built-in ones, in this order: the
    sealed PDF against ``trust_roots``, the witness signatures, and the batch sequence read
    from ``chain`` on ``registry`` (None: the report proof's own). ``jianzheng-verify`` runs
    exactly these. Raises like ``sealed_pdf_check`` for unusable trust roots."""
    return (
        sealed_pdf_check(trust_roots),
        witness_signature_check(),
        batch_sequence_check(chain, registry),
    )


def check_trust_roots(trust_roots: Sequence[bytes] | None) -> tuple[bytes, ...] | None:
    """``trust_roots`` as a tuple, once each item parsed as PEM (one or more certificates)
    or DER. None stays None: integrity-only checking, reported as a warning.

    Raises TypeError for a single bytes or str object (a sequence of them is expected) and
    ValueError for an unreadable item or a sequence that holds no certificate: trusting
    nothing is not a way to skip the check."""
    if trust_roots is None:
        return None
    if isinstance(trust_roots, (bytes, bytearray, str)):
        raise TypeError("trust_roots is a sequence of PEM or DER certificates (e.g. "
                        "[pem_bytes]), not one bytes or str object")
    roots = tuple(trust_roots)
    if not load_trust_roots(roots):
        raise ValueError("trust_roots holds no certificate; pass None to check the sealed "
                         "PDF's integrity only")
    return roots


def sealed_pdf_check(trust_roots: Sequence[bytes] | None) -> BundleCheck:
    """A BundleCheck verifying every sealed report PDF in the bundle (see module doc).

    ``trust_roots`` as for ``check_trust_roots``, which raises for unusable ones."""
    trust_roots = check_trust_roots(trust_roots)

    def sealed_pdf(bundle: Bundle) -> list[Check]:
        checks: list[Check] = []
        if trust_roots is None:
            checks.append(_check(
                "sealed_pdf_trust", True,
                "no --trust-roots given: the sealed PDF's signature is checked for integrity "
                "only, not against pinned roots (signer and time-stamp not verified)",
                warning=True,
            ))
        found = 0
        for proof in bundle.proofs:
            if proof.record_type != "report":
                continue
            for sha in _signed_pdfs(proof):
                found += 1
                checks.append(_verify_one(bundle, proof, sha, trust_roots))
        if not found:
            checks.append(_check("sealed_pdf", True,
                                 "no report record names a sealed PDF (report not sealed)",
                                 bundle.report, warning=True))
        return checks

    return sealed_pdf


def _verify_one(bundle: Bundle, proof: Proof, sha: str,
                trust_roots: Sequence[bytes] | None) -> Check:
    if sha not in bundle.file_digests:
        return _check("sealed_pdf", False, f"sealed PDF {sha} is not in the bundle", proof)
    try:
        data = bundle.read_file(sha)
    except InvalidBundle as exc:
        return _check("sealed_pdf", False, f"sealed PDF {sha} unreadable: {exc.message}", proof)
    body = proof.record.get("body")
    level = body.get("signature_level") if isinstance(body, Mapping) else None
    try:
        result = verify_sealed_pdf(
            data,
            list(trust_roots or []),
            expected_code=bundle.code,
            expected_sha256=sha,
            require_timestamp=level != "B-B",
        )
    except PdfUnreadable as exc:
        return _check("sealed_pdf", False, f"sealed PDF {sha[:16]}… is not a readable PDF: "
                      f"{exc} [{exc.code}]", proof)
    findings = [
        f for f in result.findings
        if trust_roots is not None or f.code not in _TRUST_FINDINGS
    ]
    if findings:
        detail = "; ".join(
            f"{f.code.value}: {f.message}" + (f" (page {f.page})" if f.page else "")
            for f in findings
        )
        return _check("sealed_pdf", False, f"sealed PDF {sha[:16]}…: {detail}", proof)
    trust = (f"signer {result.signer_subject} chains to a pinned root"
             if trust_roots is not None else "signer NOT checked (no pinned roots)")
    stamp = f", time-stamped {result.timestamp.isoformat()}" if result.timestamp else ""
    return _check(
        "sealed_pdf", True,
        f"sealed PDF {sha[:16]}…: PAdES signature intact, {trust}{stamp}, unmodified since "
        f"signing, QR names {bundle.code} on all {result.page_count} pages, SHA-256 matches",
        proof,
    )


# --- the chain's batch sequence -------------------------------------------------------------


def _manifest(bundle: Bundle) -> Mapping[str, Any]:
    if not bundle.manifest_bytes:
        return {}
    try:
        doc = loads_strict(bundle.manifest_bytes, max_bytes=MAX_MANIFEST_BYTES)
    except CanonicalizationError:
        return {}
    return doc if isinstance(doc, Mapping) else {}


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def batch_sequence_check(chain: BatchSource, registry: str | None) -> BundleCheck:
    """A BundleCheck holding the bundle against the chain's batch sequence (see module doc).

    ``registry`` is the pinned registry; None uses the report proof's own (the CLI warns).
    """

    def batch_sequence(bundle: Bundle) -> list[Check]:
        proofs: Iterable[Proof] = bundle.proofs + (
            (bundle.revocation,) if bundle.revocation else ()
        )
        proofs = list(proofs)
        reg = registry or (bundle.report or bundle.proofs[0]).anchor.registry
        try:
            count = chain.batch_count(reg)
        except ChainError as exc:
            name = "chain_unreachable" if exc.unreachable else "batch_sequence"
            return [_check(name, False, f"batchCount not read: {exc.message}")]
        checks: list[Check] = []
        referenced: dict[int, set[str]] = {}
        for proof in proofs:
            referenced.setdefault(proof.batch.seq, set()).add(proof.batch.root.hex())
        for seq in sorted(referenced):
            if seq > count:
                checks.append(_check(
                    "batch_sequence", False,
                    f"proofs claim batch {seq}, but the chain's batch sequence ends at "
                    f"batchCount {count}",
                ))
        manifest = _manifest(bundle)
        for entry in _dicts(manifest.get("batches")):
            checks += _check_batch_entry(chain, reg, count, entry)
        for entry in _dicts(manifest.get("unproven")):
            checks.append(_unproven_check(count, entry))
        if not any(not c.ok for c in checks):
            checks.append(_check(
                "batch_sequence", True,
                f"{len(referenced)} batch(es) referenced, all within the chain's sequence "
                f"1..{count}; the service's stored leaves agree with anchorOf",
            ))
        return checks

    return batch_sequence


def _check_batch_entry(chain: BatchSource, registry: str, count: int,
                       entry: Mapping[str, Any]) -> list[Check]:
    seq = _int(entry.get("seq"))
    root = entry.get("root")
    stored = _int(entry.get("stored_leaf_count"))
    stored_root = entry.get("stored_root")
    if seq is None or not isinstance(root, str) or not _HEX64.match(root) or stored is None:
        return [_check("batch_sequence", True, "manifest batches entry malformed; ignored",
                       warning=True)]
    try:
        info = chain.anchor_of(registry, bytes.fromhex(root))
    except ChainError as exc:
        name = "chain_unreachable" if exc.unreachable else "batch_sequence"
        return [_check(name, False, f"batch {seq}: anchorOf not read: {exc.message}")]
    if info is None:
        return [_check("batch_sequence", False,
                       f"batch {seq}: root {root} is not anchored on the registry "
                       f"(the chain's batchCount is {count})")]
    if info.leaf_count != stored or (stored_root is not None and stored_root != root):
        diff = info.leaf_count - stored
        if diff > 0:
            what = f"{diff} leaf/leaves of this anchored batch were deleted from the database"
        elif diff < 0:
            what = f"{-diff} leaf/leaves were added to this anchored batch in the database"
        else:
            what = "leaves of this anchored batch were altered in the database"
        return [_check(
            "batch_sequence", False,
            f"batch {seq} (seq {info.seq} of the chain's {count}) was anchored in block "
            f"{info.block_number} with {info.leaf_count} leaves under root {root[:16]}…; the "
            f"service's database now holds {stored} leaves"
            + (f" building root {str(stored_root)[:16]}…" if stored_root else "")
            + f": {what}",
        )]
    return []


def _unproven_check(count: int, entry: Mapping[str, Any]) -> Check:
    rid = entry.get("record_id")
    rtype = entry.get("type")
    reason = str(entry.get("reason") or "no reason given")[:300]
    seq = _int(entry.get("batch_seq"))
    if seq is None:
        where = "it is in no batch the service knows"
    elif seq <= count:
        where = (f"its batch {seq} is anchored on chain (batchCount {count}), so it is not "
                 "pending: the service's database lost it")
    else:
        where = f"its batch {seq} is beyond the chain's batchCount {count}: never anchored"
    return _check(
        "batch_sequence", False,
        f"the bundle carries no proof of this record ({reason}); {where}",
        record_id=rid if isinstance(rid, str) else None,
        record_type=rtype if isinstance(rtype, str) else None,
    )
