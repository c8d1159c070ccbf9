"""What SQLite's synchronous=FULL (the embedded default since issue 11) costs per commit.

The same work in one run, twice: N evidence records appended one per transaction (what a
record POST commits), on a SQLite file in WAL mode with synchronous=NORMAL and then FULL
(and the reverse order, to cancel warm-up), on the data volume's file system.

    .venv/bin/python bench/durability.py [--records N] [--dir DIR]

Last line: `durability: normal_per_s=N full_per_s=N full_cost=X` (FULL's commits/s as a
fraction of NORMAL's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event  # noqa: E402

from service.domain.evidence import append_record  # noqa: E402
from service.storage.db import make_engine, make_sessionmaker, upgrade  # noqa: E402


def run(path: Path, synchronous: str, records: int) -> float:
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _sync(dbapi_conn: object, _record: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.close()

    sessions = make_sessionmaker(engine)
    start = time.perf_counter()
    for i in range(records):
        with sessions() as s:
            append_record(s, type="project", institution="91440300MA5EXXXXXX",
                          body={"name": f"P{i}", "location": "深圳"}, parents=[])
            s.commit()
    elapsed = time.perf_counter() - start
    engine.dispose()
    return records / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="jz-durability-", dir=args.dir))
    rates: dict[str, list[float]] = {"NORMAL": [], "FULL": []}
    for round_, order in enumerate((("NORMAL", "FULL"), ("FULL", "NORMAL"))):
        for mode in order:
            rates[mode].append(run(base / f"{mode}-{round_}.db", mode, args.records))
    print(f"{'synchronous':<12} {'commits/s (two runs)':>24}")
    for mode, values in rates.items():
        print(f"{mode:<12} {', '.join(f'{v:,.0f}' for v in values):>24}")
    normal, full = statistics.mean(rates["NORMAL"]), statistics.mean(rates["FULL"])
    print(
        f"durability: normal_per_s={normal:.0f} full_per_s={full:.0f} "
        f"full_cost={full / normal:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
