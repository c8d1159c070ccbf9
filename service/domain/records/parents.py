"""Which records a record may derive from (DESIGN.md "The traceable chain").

project -> contract -> commission -> sample -> {seal, witness, receipt, test_record};
any record but a media record may list `media` records (images, video, data files)
among its parents. `resolve_parents` loads a request's parents and holds them to
`PARENT_RULES`; the helpers below read facts off the resolved parents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from service.domain.evidence import load_records
from service.domain.records.queries import record_json
from service.errors import Forbidden, Invalid, NotFound
from service.storage.models import Record


@dataclass(frozen=True)
class ParentRule:
    allowed: frozenset[str]
    #: type -> (min, max) count; max None = unbounded.
    counts: Mapping[str, tuple[int, int | None]]


def _rule(allowed: set[str], **counts: tuple[int, int | None]) -> ParentRule:
    return ParentRule(frozenset(allowed | {"media"}), counts)


PARENT_RULES: dict[str, ParentRule] = {
    "project": _rule(set()),
    "contract": _rule({"project"}, project=(1, 1)),
    "commission": _rule({"contract"}, contract=(1, 1)),
    "sample": _rule({"commission"}, commission=(1, 1)),
    "seal": _rule({"sample"}, sample=(1, 1)),
    "witness": _rule({"sample", "seal"}, sample=(1, None)),
    "receipt": _rule({"seal"}, seal=(1, 1)),
    # lab tests name samples; on-site tests a test plan or the project (the handler checks)
    "test_record": _rule(
        {"sample", "receipt", "test_record", "test_plan", "project"},
        sample=(0, None),
        test_plan=(0, 1),
        project=(0, 1),
    ),
    "test_plan": _rule({"contract"}, contract=(1, 1)),
    "media": ParentRule(frozenset(), {}),
}


def resolve_parents(
    session: Session, ids: Sequence[str], institution: str, child_type: str
) -> list[Record]:
    """Load the parents; 404 unknown, 403 another institution's, 422 wrong type or count."""
    if len(set(ids)) != len(ids):
        raise Invalid("parent_duplicate", "a parent is listed twice")
    found = load_records(session, ids)
    for pid in ids:
        if pid not in found:
            raise NotFound("parent_not_found", f"no record {pid}", parent=pid)
    for pid in ids:
        if found[pid].institution != institution:
            raise Forbidden(
                "forbidden", f"record {pid} belongs to another institution", parent=pid
            )
    rule = PARENT_RULES[child_type]
    for pid in ids:
        if found[pid].type not in rule.allowed:
            raise Invalid(
                "parent_type_invalid",
                f"a {child_type} cannot derive from a {found[pid].type} ({pid}); allowed: "
                + ", ".join(sorted(rule.allowed)),
                parent=pid,
            )
    counts = Counter(found[pid].type for pid in ids)
    for ptype, (low, high) in rule.counts.items():
        n = counts.get(ptype, 0)
        if n < low:
            raise Invalid(
                "parent_required", f"a {child_type} needs {low} {ptype} parent(s)"
            )
        if high is not None and n > high:
            raise Invalid(
                "parent_count_invalid", f"a {child_type} takes at most {high} {ptype}"
            )
    return [found[pid] for pid in ids]


def media_hashes(parents: Sequence[Record]) -> set[str]:
    """SHA-256 of every file the media parents hold."""
    out: set[str] = set()
    for p in parents:
        if p.type == "media":
            out.update(f["sha256"] for f in record_json(p)["files"])
    return out


def require_images(images: Sequence[str], parents: Sequence[Record], what: str) -> None:
    """422 `image_not_in_parents` unless a media parent holds every image named."""
    have = media_hashes(parents)
    missing = [h for h in images if h not in have]
    if missing:
        raise Invalid(
            "image_not_in_parents",
            f"{what} names image {missing[0]} but no media parent holds it",
        )


def sample_code_of(record: Record) -> str:
    """The code of a sample record."""
    code = record_json(record)["body"].get("sample_code")
    return str(code)
