"""Copy the browser files the service serves itself from web/node_modules (npm ci) into
service/pages/offline/vendor/ and service/pages/console/vendor/; `--check` fails when the
committed copies differ.

    (cd web && npm ci) && .venv/bin/python scripts/vendor_web.py [--check]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / "web" / "node_modules"
PAGES = ROOT / "service" / "pages"
#: vendored path under service/pages -> file in node_modules (zxing-wasm: ZXing-C++ as
#: WebAssembly, MIT; chart.js: the console's charts, MIT)
FILES = {
    "offline/vendor/zxing-reader.js": "zxing-wasm/dist/iife/reader/index.js",
    "offline/vendor/zxing_reader.wasm": "zxing-wasm/dist/reader/zxing_reader.wasm",
    "offline/vendor/zxing-wasm.LICENSE": "zxing-wasm/LICENSE",
    "console/vendor/chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
    "console/vendor/chart.js.LICENSE.md": "chart.js/LICENSE.md",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    stale = []
    for name, source in FILES.items():
        src, dst = MODULES / source, PAGES / name
        if not src.exists():
            print(f"vendor_web: {src} is missing; run npm ci in web/", file=sys.stderr)
            return 2
        if args.check:
            if not dst.exists() or dst.read_bytes() != src.read_bytes():
                stale.append(name)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    if stale:
        print(f"vendor_web: stale vendored files: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
