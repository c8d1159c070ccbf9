"""Time merkle_root and all audit paths for a large batch: `python bench/bench_merkle.py [N]`."""

from __future__ import annotations

import hashlib
import statistics
import sys
import time

from verifier.merkle import audit_path_from_levels, merkle_root, tree_levels


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    leaves = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        merkle_root(leaves)
        runs.append(time.perf_counter() - start)
    print(f"merkle_root({n}): median {statistics.median(runs) * 1000:.1f} ms over 5 runs")
    start = time.perf_counter()
    levels = tree_levels(leaves)
    for i in range(n):
        audit_path_from_levels(levels, i)
    print(f"tree_levels + {n} audit paths: {(time.perf_counter() - start) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
