"""``jianzheng-bundle/1``: a report's evidence bundle (a ZIP), read safely and verified.

Reading enforces hard limits before anything is decompressed (member count, declared sizes,
compression ratio) and again while reading, so a zip bomb costs nothing. Verification runs
every proof's checks, then the bundle checks: files hash to their names, every file a record
names is present, every parent link resolves inside the bundle, the report is there and its
code matches, and the report's standing is read from the chain's ``revocationOf``; then,
always, the sealed PDF, the witness signatures and the chain's batch sequence
(``verifier.bundle_checks.default_bundle_checks``). A caller's own checks plug in as
``BundleCheck`` callables.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from verifier import custody
from verifier.canonical import loads_strict
from verifier.chain import BundleChainSource, ChainSource, canonical_code, report_subject
from verifier.errors import (
    CanonicalizationError,
    ChainError,
    InvalidBundle,
    InvalidProof,
    VerifierError,
)
from verifier.merkle import DEFAULT_ALG, HASH_ALGS, hasher
from verifier.models import (
    BundleVerification,
    Check,
    Proof,
    ProofVerification,
    ReportStatus,
    RevocationInfo,
)
from verifier.proof import Pins, parse_proof, verify_proof

BUNDLE_FORMAT = "jianzheng-bundle/1"
MANIFEST_NAME = "manifest.json"
FILES_PREFIX = "files/"

#: Largest bundle file accepted, in bytes.
MAX_BUNDLE_BYTES = 2 * 1024**3
#: Most ZIP members accepted.
MAX_MEMBERS = 10_000
#: Largest total of the members' uncompressed sizes.
MAX_TOTAL_UNCOMPRESSED = 4 * 1024**3
#: Largest uncompressed member.
MAX_MEMBER_BYTES = 1024**3
#: Largest manifest.json.
MAX_MANIFEST_BYTES = 64 * 1024**2
#: Highest uncompressed/compressed ratio accepted for members above RATIO_MIN_BYTES.
MAX_COMPRESSION_RATIO = 100
RATIO_MIN_BYTES = 1024**2
#: Most proofs in one manifest.
MAX_PROOFS = 10_000
MAX_RECORD_ID_LENGTH = 128
READ_CHUNK = 1024**2

#: Record types INTERFACE §1 and §7.4 name. A type not listed is still an ordinary record
#: (hash, proof, parents: §7.4), as long as it is a plain lower-case name.
RECORD_TYPES = frozenset(
    {
        "project", "contract", "commission", "sample", "seal", "witness", "receipt",
        "test_record", "report", "revocation", "media", "numbering_void",
        "test_plan", "registry", "ledger_action",
    }
)
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


class Bundle:
    """An opened, structurally valid bundle: the parsed manifest and the hashed files.

    ``file_digests`` maps each ``files/<name>`` name to the SHA-256 (hex) of its content as
    read, ``file_sizes`` to its size. ``read_file`` returns a file's bytes (for extra checks
    such as the sealed PDF). Use as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        archive: zipfile.ZipFile,
        *,
        source: str,
        code: str,
        report_record_id: str,
        proofs: tuple[Proof, ...],
        revocation: Proof | None,
        file_digests: dict[str, str],
        file_sizes: dict[str, int],
        unexpected_members: tuple[str, ...],
        manifest_bytes: bytes = b"",
    ) -> None:
        self._archive = archive
        #: manifest.json as read, for checks that use the format's additive fields.
        self.manifest_bytes = manifest_bytes
        self.source = source
        self.code = code
        self.report_record_id = report_record_id
        self.proofs = proofs
        self.revocation = revocation
        self.file_digests = file_digests
        self.file_sizes = file_sizes
        self.unexpected_members = unexpected_members

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._archive.close()

    @property
    def report(self) -> Proof | None:
        """The proof of the report record named by the manifest, if present."""
        for proof in self.proofs:
            if proof.record_id == self.report_record_id and proof.record_type == "report":
                return proof
        return None

    def read_file(self, sha256_hex: str) -> bytes:
        """The content of ``files/<sha256_hex>``; raises InvalidBundle if absent or unreadable."""
        try:
            info = self._archive.getinfo(FILES_PREFIX + sha256_hex)
        except KeyError as exc:
            raise InvalidBundle(f"bundle has no file {sha256_hex}", code="missing_file") from exc
        out = io.BytesIO()
        _stream_member(self._archive, info, out.write)
        return out.getvalue()


#: A pluggable bundle check (e.g. the sealed PDF): it returns its own named Check results.
BundleCheck = Callable[[Bundle], Sequence[Check]]


# --- reading -----------------------------------------------------------------------------------


def open_bundle(source: str | os.PathLike[str] | bytes) -> Bundle:
    """Open and structurally validate a bundle (a path or the ZIP's bytes).

    Raises InvalidBundle for anything unusable: not a ZIP, over a limit, encrypted or
    corrupt members, duplicate names, no or malformed manifest, unknown format, or a proof
    that does not parse. Content problems (a file that does not hash to its name) are not
    raised here: they are failed checks of ``verify_bundle``.
    """
    fileobj: IO[bytes]
    if isinstance(source, bytes):
        if len(source) > MAX_BUNDLE_BYTES:
            raise InvalidBundle("bundle exceeds MAX_BUNDLE_BYTES", code="bundle_too_large")
        fileobj = io.BytesIO(source)
        label = "<bytes>"
    else:
        label = os.fspath(source)
        try:
            size = os.path.getsize(label)
            if size > MAX_BUNDLE_BYTES:
                raise InvalidBundle(
                    f"bundle is {size} bytes, more than the limit of {MAX_BUNDLE_BYTES}",
                    code="bundle_too_large",
                )
            fileobj = open(label, "rb")  # closed with the ZipFile
        except OSError as exc:
            raise InvalidBundle(f"cannot read {label}: {exc.strerror}", code="unreadable") from exc
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        fileobj.close()
        raise InvalidBundle(f"{label} is not a readable ZIP file: {exc}", code="not_zip") from exc
    try:
        return _load(archive, label)
    except BaseException:
        archive.close()
        fileobj.close()
        raise


def _load(archive: zipfile.ZipFile, label: str) -> Bundle:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InvalidBundle(f"bundle has {len(infos)} members, limit {MAX_MEMBERS}",
                            code="too_many_members")
    names: set[str] = set()
    total = 0
    for info in infos:
        if info.filename in names:
            raise InvalidBundle(f"member {info.filename!r} appears twice", code="duplicate_member")
        names.add(info.filename)
        if info.flag_bits & 0x1:
            raise InvalidBundle(f"member {info.filename!r} is encrypted", code="encrypted_member")
        if info.file_size > MAX_MEMBER_BYTES:
            raise InvalidBundle(f"member {info.filename!r} exceeds {MAX_MEMBER_BYTES} bytes",
                                code="member_too_large")
        total += info.file_size
        if (
            info.file_size > RATIO_MIN_BYTES
            and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
        ):
            raise InvalidBundle(
                f"member {info.filename!r} compresses more than {MAX_COMPRESSION_RATIO}:1",
                code="compression_ratio",
            )
    if total > MAX_TOTAL_UNCOMPRESSED:
        raise InvalidBundle(f"bundle expands to {total} bytes, limit {MAX_TOTAL_UNCOMPRESSED}",
                            code="bundle_too_large")
    if MANIFEST_NAME not in names:
        raise InvalidBundle("bundle has no manifest.json", code="no_manifest")
    manifest_info = archive.getinfo(MANIFEST_NAME)
    if manifest_info.file_size > MAX_MANIFEST_BYTES:
        raise InvalidBundle("manifest.json is too large", code="member_too_large")
    buf = io.BytesIO()
    _stream_member(archive, manifest_info, buf.write)
    code, report_id, proofs, revocation = parse_manifest(buf.getvalue())

    digests: dict[str, str] = {}
    sizes: dict[str, int] = {}
    unexpected: list[str] = []
    for info in infos:
        name = info.filename
        if name == MANIFEST_NAME or name == FILES_PREFIX:
            continue
        if name.startswith(FILES_PREFIX) and not info.is_dir():
            h = hashlib.sha256()
            _stream_member(archive, info, h.update)
            digests[name[len(FILES_PREFIX):]] = h.hexdigest()
            sizes[name[len(FILES_PREFIX):]] = info.file_size
        else:
            unexpected.append(name)
    return Bundle(
        archive,
        source=label,
        code=code,
        report_record_id=report_id,
        proofs=proofs,
        revocation=revocation,
        file_digests=digests,
        file_sizes=sizes,
        unexpected_members=tuple(unexpected),
        manifest_bytes=buf.getvalue(),
    )


def _stream_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, sink: Callable[[bytes], object]
) -> None:
    """Feed a member's content to ``sink``, never more than its declared size (CRC checked)."""
    remaining = info.file_size
    try:
        with archive.open(info) as member:
            while True:
                chunk = member.read(min(READ_CHUNK, remaining + 1))
                if not chunk:
                    break
                remaining -= len(chunk)
                if remaining < 0:
                    raise InvalidBundle(f"member {info.filename!r} is longer than declared",
                                        code="corrupt_member")
                sink(chunk)
    except InvalidBundle:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError, ValueError) as exc:
        raise InvalidBundle(f"member {info.filename!r} cannot be read: {exc}",
                            code="corrupt_member") from exc


def parse_manifest(data: bytes) -> tuple[str, str, tuple[Proof, ...], Proof | None]:
    """(code, report_record_id, proofs, revocation proof) of a manifest; InvalidBundle if bad."""
    try:
        doc = loads_strict(data, max_bytes=MAX_MANIFEST_BYTES)
    except CanonicalizationError as exc:
        raise InvalidBundle(f"manifest.json is not strict JSON: {exc.message}",
                            code="invalid_manifest") from exc
    if not isinstance(doc, dict):
        raise InvalidBundle("manifest.json is not a JSON object", code="invalid_manifest")
    fmt = doc.get("format")
    if fmt != BUNDLE_FORMAT:
        raise InvalidBundle(f"unknown bundle format {fmt!r} (expected {BUNDLE_FORMAT!r})",
                            code="unknown_format")
    raw_code = doc.get("code")
    try:
        if not isinstance(raw_code, str):
            raise ValueError
        code = canonical_code(raw_code)
    except ValueError as exc:
        raise InvalidBundle(f"manifest code {raw_code!r} is not a report code",
                            code="invalid_manifest") from exc
    report_id = doc.get("report_record_id")
    if not isinstance(report_id, str) or not 0 < len(report_id) <= MAX_RECORD_ID_LENGTH:
        raise InvalidBundle("manifest report_record_id must be a non-empty string",
                            code="invalid_manifest")
    raw_proofs = doc.get("proofs")
    if not isinstance(raw_proofs, list) or not 0 < len(raw_proofs) <= MAX_PROOFS:
        raise InvalidBundle(f"manifest proofs must be a list of 1..{MAX_PROOFS} proofs",
                            code="invalid_manifest")
    proofs: list[Proof] = []
    for i, raw in enumerate(raw_proofs):
        try:
            proofs.append(parse_proof(raw))
        except InvalidProof as exc:
            raise InvalidBundle(f"proofs[{i}]: {exc.message}", code="invalid_proof") from exc
    raw_revocation = doc.get("revocation")
    revocation: Proof | None = None
    if raw_revocation is not None:
        try:
            revocation = parse_proof(raw_revocation)
        except InvalidProof as exc:
            raise InvalidBundle(f"revocation: {exc.message}", code="invalid_proof") from exc
    alg = doc.get("hash", DEFAULT_ALG)
    if alg not in HASH_ALGS:
        raise InvalidBundle(f"unknown log hash {alg!r} (expected one of "
                            f"{', '.join(HASH_ALGS)})", code="unknown_hash")
    mixed = [p for p in (*proofs, *([revocation] if revocation else [])) if p.hash != alg]
    if mixed:
        raise InvalidBundle(
            f"the manifest's log hash is {alg} but proof of record {mixed[0].record_id} says "
            f"{mixed[0].hash}: a bundle holds proofs of one log hash", code="mixed_hash")
    return code, report_id, tuple(proofs), revocation


# --- record-level helpers -----------------------------------------------------------------------


def report_code_of(record: Mapping[str, Any]) -> str | None:
    """The report code a ``report`` record carries in ``body.code``, canonicalized, if any."""
    body = record.get("body")
    if isinstance(body, Mapping):
        code = body.get("code")
        if isinstance(code, str):
            try:
                return canonical_code(code)
            except ValueError:
                return code
    return None


def _record_problems(record: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if not isinstance(record.get("id"), str) or not record["id"]:
        problems.append("no string id")
    rtype = record.get("type")
    if not isinstance(rtype, str) or not _TYPE_RE.match(rtype):
        problems.append(f"type {rtype!r} is not a record type name")
    parents = record.get("parents", [])
    if not isinstance(parents, list) or not all(
        isinstance(p, str) and _HASH_RE.match(p) for p in parents
    ):
        problems.append("parents must be a list of 64-hex leaf hashes")
    files = record.get("files", [])
    if not isinstance(files, list) or not all(
        isinstance(f, Mapping) and isinstance(f.get("sha256"), str)
        and _HASH_RE.match(f["sha256"]) for f in files
    ):
        problems.append("files must be a list of objects with a 64-hex sha256")
    return problems


def _parents(proof: Proof) -> list[str]:
    parents = proof.record.get("parents", [])
    return [p for p in parents if isinstance(p, str)] if isinstance(parents, list) else []


def _files(proof: Proof) -> list[Mapping[str, Any]]:
    files = proof.record.get("files", [])
    return [f for f in files if isinstance(f, Mapping)] if isinstance(files, list) else []


def _rcheck(name: str, ok: bool, detail: str, proof: Proof | None = None,
            warning: bool = False) -> Check:
    return Check(
        name=name,
        ok=ok,
        detail=detail,
        record_id=proof.record_id if proof else None,
        record_type=proof.record_type if proof else None,
        warning=warning,
    )


# --- bundle checks (pure) -------------------------------------------------------------------


def check_record_shapes(proofs: Sequence[Proof]) -> list[Check]:
    """Every record has an id, a known type, hex parents and well-formed file entries."""
    failures = [
        _rcheck("record_shape", False, "; ".join(problems), p)
        for p in proofs
        if (problems := _record_problems(p.record))
    ]
    return failures or [_rcheck("record_shape", True, f"{len(proofs)} records well-formed")]


def check_file_hashes(file_digests: Mapping[str, str]) -> list[Check]:
    """Every ``files/<sha256>`` member hashes to its name."""
    failures = [
        _rcheck("file_hash", False, f"files/{name} hashes to {actual} (file swapped or altered)")
        for name, actual in sorted(file_digests.items())
        if name != actual
    ]
    return failures or [
        _rcheck("file_hash", True, f"{len(file_digests)} files hash to their names")
    ]


def check_record_files(proofs: Sequence[Proof], file_digests: Mapping[str, str],
                       file_sizes: Mapping[str, int],
                       sm3_of: Callable[[str], str] | None = None) -> list[Check]:
    """Every file a record names is in the bundle, hashes right and has the named size; a
    record of an SM3 log also names each file's SM3 (§7.7), checked with ``sm3_of``."""
    failures: list[Check] = []
    count = 0
    for proof in proofs:
        for entry in _files(proof):
            sha = entry.get("sha256")
            if not isinstance(sha, str):
                continue
            count += 1
            role = entry.get("role", "file")
            if sha not in file_digests:
                failures.append(_rcheck("record_files", False,
                                        f"{role} file {sha} is missing from the bundle", proof))
            elif file_digests[sha] != sha:
                failures.append(_rcheck("record_files", False,
                                        f"{role} file {sha} in the bundle does not hash to its "
                                        "name", proof))
            elif isinstance(entry.get("size"), int) and entry["size"] != file_sizes.get(sha):
                failures.append(_rcheck("record_files", False,
                                        f"{role} file {sha} is {file_sizes.get(sha)} bytes, record"
                                        f" says {entry['size']}", proof))
            elif proof.hash == "sm3" and "sm3" not in entry:
                failures.append(_rcheck("record_files", False,
                                        f"{role} file {sha} of a record on an SM3 log names no "
                                        "SM3 (§7.7)", proof))
            elif "sm3" in entry and (sm3_of is None or sm3_of(sha) != entry["sm3"]):
                failures.append(_rcheck("record_files", False,
                                        f"{role} file {sha} does not have the SM3 "
                                        f"{entry['sm3']!r} the record names", proof))
    return failures or [
        _rcheck("record_files", True, f"{count} files named by records present and intact")
    ]


def check_parent_links(proofs: Sequence[Proof]) -> list[Check]:
    """Every parent leaf hash a record names is the leaf hash of a proof in the bundle."""
    leaves = {p.leaf_hash.hex() for p in proofs}
    failures = [
        _rcheck("parent_links", False, f"parent {parent} is not in the bundle", proof)
        for proof in proofs
        for parent in _parents(proof)
        if parent not in leaves
    ]
    links = sum(len(_parents(p)) for p in proofs)
    return failures or [_rcheck("parent_links", True, f"{links} parent links resolve")]


def check_report(bundle_report_id: str, code: str, proofs: Sequence[Proof]) -> list[Check]:
    """The report record is in the bundle, carries the bundle's code, and every other record
    is in its ancestry or attached to it; a record that is neither is a warning (present
    but not evidence).

    Attached evidence: records that are not ancestors of the report but derive from it,
    such as the seal and witness records of a sample the report rests on (their parents
    include a record of the report's ancestry, or a record attached that way), and the
    records those name as parents (the witness's key images)."""
    reports = [p for p in proofs if p.record_id == bundle_report_id]
    if not reports:
        return [_rcheck("report", False, f"report record {bundle_report_id} is not in the bundle")]
    report = reports[0]
    if report.record_type != "report":
        return [_rcheck("report", False,
                        f"record {bundle_report_id} is a {report.record_type!r}, not a report",
                        report)]
    checks = [_rcheck("report", True, f"report record {bundle_report_id} present", report)]
    carried = report_code_of(report.record)
    if carried is None:
        checks.append(_rcheck("report_code", True,
                              "report record carries no body.code; the bundle's code "
                              f"{code} is not bound to it", report, warning=True))
    elif carried != code:
        checks.append(_rcheck("report_code", False,
                              f"report record carries code {carried}, bundle says {code}",
                              report))
    else:
        checks.append(_rcheck("report_code", True, f"report record carries code {code}", report))
    by_leaf = {p.leaf_hash.hex(): p for p in proofs}
    seen = {report.leaf_hash.hex()}
    stack = [report]
    while stack:
        for parent in _parents(stack.pop()):
            if parent in by_leaf and parent not in seen:
                seen.add(parent)
                stack.append(by_leaf[parent])
    attached = _attached_evidence(proofs, by_leaf, seen)
    checks.extend(
        _rcheck("ancestry", True, f"attached evidence, not an ancestor of the report: {why}", p)
        for p, why in attached
    )
    related = seen | {p.leaf_hash.hex() for p, _ in attached}
    outside = [p for p in proofs if p.leaf_hash.hex() not in related]
    checks.extend(
        _rcheck("ancestry", True,
                "record is neither in the report's ancestry nor attached to it", p,
                warning=True)
        for p in outside
    )
    if not outside:
        in_ancestry = sum(1 for p in proofs if p.leaf_hash.hex() in seen)
        detail = f"all {len(proofs)} records are in the report's ancestry"
        if attached:
            detail = (f"all {len(proofs)} records are in the report's ancestry "
                      f"({in_ancestry}) or attached to it ({len(attached)})")
        checks.append(_rcheck("ancestry", True, detail, report))
    return checks


def _attached_evidence(proofs: Sequence[Proof], by_leaf: Mapping[str, Proof],
                       ancestry: set[str]) -> list[tuple[Proof, str]]:
    """Records outside the report's ancestry that derive from it (any depth), then the
    parents of those that are outside it too; each with why it counts as attached."""
    children: dict[str, list[Proof]] = {}
    for proof in proofs:
        for named in _parents(proof):
            children.setdefault(named, []).append(proof)
    related = set(ancestry)
    found: list[tuple[Proof, str]] = []
    queue = list(ancestry)
    while queue:
        source_leaf = queue.pop()
        source = by_leaf.get(source_leaf)
        if source is None:
            continue
        for derived in children.get(source_leaf, ()):
            leaf = derived.leaf_hash.hex()
            if leaf in related:
                continue
            related.add(leaf)
            where = "the report's ancestry" if source_leaf in ancestry else "attached evidence"
            found.append((derived, f"derives from {source.record_type} {source.record_id} of "
                                   f"{where}"))
            queue.append(leaf)
    stack = [p for p, _ in found]
    while stack:
        child = stack.pop()
        for parent_leaf in _parents(child):
            parent = by_leaf.get(parent_leaf)
            if parent is None or parent_leaf in related:
                continue
            related.add(parent_leaf)
            found.append((parent, f"named as a parent by attached record "
                                  f"{child.record_type} {child.record_id}"))
            stack.append(parent)
    order = {id(p): i for i, p in enumerate(proofs)}
    return sorted(found, key=lambda item: order.get(id(item[0]), len(order)))


def report_records(code: str, proofs: Sequence[Proof]) -> dict[str, Mapping[str, Any]]:
    """The report's own records (every stage) by leaf hash."""
    return {
        p.leaf_hash.hex(): p.record
        for p in proofs
        if p.record_type == "report" and report_code_of(p.record) == code
    }


def check_history(code: str, proofs: Sequence[Proof]) -> list[Check]:
    """§7.1: every record the report's `history` names is in the bundle, so a record that
    existed when the report was issued cannot be left out of it."""
    reports = report_records(code, proofs)
    records = {p.leaf_hash.hex(): p.record for p in proofs}
    if not any(isinstance(r.get("body", {}).get("history"), Mapping) for r in reports.values()):
        return [_rcheck("history", True, "the report records carry no history (made before "
                        "version 1.1)", warning=False)]
    missing = custody.missing_history(reports.values(), records)
    if not missing:
        total = sum(len(v) for v in custody.history_of(reports.values()).values())
        return [_rcheck("history", True, f"every record of the report's history is here "
                        f"({total} records of {len(custody.history_of(reports.values()))} "
                        "sample(s))")]
    return [
        _rcheck(custody.HISTORY_RECORD_MISSING, False,
                f"the report's history names record {leaf} (of sample {sample}) but the "
                "bundle does not hold it")
        for sample, leaf in missing
    ]


def evidence_warnings(code: str, proofs: Sequence[Proof]) -> list[custody.EvidenceWarning]:
    """§7.3: the warnings the bundle's records alone show (verifier.custody)."""
    records = {p.leaf_hash.hex(): p.record for p in proofs}
    return custody.evidence_warnings(report_records(code, proofs), records)


def check_revocation(
    code: str, revocation: RevocationInfo | None, revocation_proof: Proof | None
) -> tuple[list[Check], ReportStatus]:
    """The report's standing from the chain's ``revocationOf(report_subject(code))``.

    Revoked (or superseded, when the matching revocation record names a successor) is a
    passed check with a warning: the evidence holds, the report no longer stands. The
    bundle's own revocation record must be the one the chain names.
    """
    if revocation is None:
        checks = [_rcheck("revocation", True, f"report {code} is not revoked on chain")]
        if revocation_proof is not None:
            checks.append(_rcheck("revocation_record", True,
                                  "bundle carries a revocation record the chain does not "
                                  "(yet) register", revocation_proof, warning=True))
        return checks, "genuine"
    status: ReportStatus = "revoked"
    reason = revocation.reason.hex()
    checks = []
    if revocation_proof is None:
        checks.append(_rcheck("revocation_record", True,
                              f"the revocation record {reason} is not included", warning=True))
    elif revocation_proof.leaf_hash != revocation.reason:
        checks.append(_rcheck("revocation_record", False,
                              f"chain names revocation record {reason}, bundle carries "
                              f"{revocation_proof.leaf_hash.hex()}", revocation_proof))
    else:
        body = revocation_proof.record.get("body")
        successor = body.get("superseded_by") if isinstance(body, Mapping) else None
        if successor:
            status = "superseded"
        checks.append(_rcheck("revocation_record", True,
                              "bundle's revocation record is the one the chain names",
                              revocation_proof))
    what = "SUPERSEDED" if status == "superseded" else "REVOKED"
    checks.insert(0, _rcheck("revocation", True,
                             f"report {code} {what} on chain at {revocation.timestamp} "
                             f"(revocation record {reason})", warning=True))
    return checks, status


def read_revocation(
    chain: ChainSource, registry: str, code: str, revocation_proof: Proof | None
) -> tuple[list[Check], ReportStatus | None, RevocationInfo | None]:
    """Adapter: read ``revocationOf`` and run ``check_revocation``; chain trouble is a failed
    check (``chain_unreachable`` or ``revocation``), never an exception."""
    try:
        info = chain.revocation_of(registry, report_subject(code))
    except ChainError as exc:
        name = "chain_unreachable" if exc.unreachable else "revocation"
        return [_rcheck(name, False, f"revocation not checked: {exc.message}")], None, None
    checks, status = check_revocation(code, info, revocation_proof)
    return checks, status, info


# --- verification -----------------------------------------------------------------------------


def verify_bundle(
    bundle: Bundle,
    chain: BundleChainSource,
    pins: Pins | None = None,
    *,
    trust_roots: Sequence[bytes] | None,
    extra_checks: Iterable[BundleCheck] = (),
) -> BundleVerification:
    """Verify an opened bundle against ``chain``, trusting ``pins`` and ``trust_roots``.

    Every check runs, the same as ``jianzheng-verify``'s: each proof's, the built-in bundle
    checks, then ``sealed_pdf``, ``witness_signature`` and ``batch_sequence``
    (``verifier.bundle_checks.default_bundle_checks``), then ``extra_checks``.

    ``trust_roots`` must be given: the PEM or DER certificates (``read_trust_roots``,
    ``jianzheng ca roots``) the sealed PDF's signer and time-stamp must chain to, or None to
    check the signature's integrity only, which the result reports as a ``sealed_pdf_trust``
    warning (as the CLI does without ``--trust-roots``). Unusable roots raise ValueError
    (TypeError for one bytes object in place of a sequence), before the chain is read.
    A check that raises a VerifierError becomes a failed check named after it.
    """
    # Imported here: bundle_checks and witness import Bundle and BundleCheck from this module.
    from verifier.bundle_checks import default_bundle_checks

    pins = pins or Pins()
    checks_after = (
        *default_bundle_checks(chain, pins.registry, trust_roots),
        *extra_checks,
    )
    all_proofs = bundle.proofs + ((bundle.revocation,) if bundle.revocation else ())
    verifications: tuple[ProofVerification, ...] = tuple(
        verify_proof(p, chain, pins) for p in all_proofs
    )
    checks: list[Check] = []
    checks += check_record_shapes(all_proofs)
    checks += check_file_hashes(bundle.file_digests)
    checks += check_record_files(all_proofs, bundle.file_digests, bundle.file_sizes,
                                 lambda sha: hasher("sm3")(bundle.read_file(sha)).hex())
    checks += check_parent_links(all_proofs)
    checks += check_report(bundle.report_record_id, bundle.code, bundle.proofs)
    checks += check_history(bundle.code, bundle.proofs)
    warnings = tuple(evidence_warnings(bundle.code, bundle.proofs))
    by_id = {p.record_id: p for p in bundle.proofs}
    checks += [
        _rcheck(w.code, True, w.detail, by_id.get(w.record_id or ""), warning=True)
        for w in warnings
    ]
    checks += [
        _rcheck("unexpected_member", True, f"member {name!r} is not part of the format; ignored",
                warning=True)
        for name in bundle.unexpected_members
    ]
    report = bundle.report
    registry = pins.registry or (report or bundle.proofs[0]).anchor.registry
    revocation_checks, status, info = read_revocation(chain, registry, bundle.code,
                                                      bundle.revocation)
    checks += revocation_checks
    for extra in checks_after:
        try:
            checks += extra(bundle)
        except VerifierError as exc:
            name = getattr(extra, "__name__", "extra_check")
            checks.append(_rcheck(name, False, str(exc)))
    return BundleVerification(
        code=bundle.code,
        report_record_id=bundle.report_record_id,
        proofs=verifications,
        checks=tuple(checks),
        status=status,
        revocation=info,
        warnings=warnings,
    )


def verify_bundle_file(
    path: str | os.PathLike[str] | Path,
    chain: BundleChainSource,
    pins: Pins | None = None,
    *,
    trust_roots: Sequence[bytes] | None,
    extra_checks: Iterable[BundleCheck] = (),
) -> BundleVerification:
    """Open, verify (every check, as ``verify_bundle``) and close a bundle file; raises
    InvalidBundle if it is unusable, ValueError for unusable ``trust_roots``."""
    with open_bundle(path) as bundle:
        return verify_bundle(bundle, chain, pins, trust_roots=trust_roots,
                             extra_checks=extra_checks)
