"""``jianzheng-verify qr``: check a report's signed QR payload offline (INTERFACE §7.8).

    jianzheng-verify qr IMAGE_OR_TEXT --trust-list FILE [--trust-roots ROOTS.pem] [--json]

IMAGE_OR_TEXT is a photo or scan (PNG, JPEG, …), a PDF (its pages are rendered), a text
file holding the QR text, or the QR text itself (the URL or its ``JZ1…`` part). Nothing
is fetched: the trust list is the file given (``GET /ca/trust-list.json`` saved earlier).
With ``--trust-roots`` the list's own signature is checked against the platform roots
(``jianzheng ca roots``) too.

Exit codes: 0 the payload is valid; 1 invalid (changed, unknown or removed key, sealing
time outside the key's window, a list not signed by the roots); 2 unusable input (no QR,
not a Jianzheng payload, an unreadable trust list).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from verifier.errors import InvalidQr, InvalidTrustList
from verifier.models import Check
from verifier.qr import (
    MAX_QR_TEXT,
    MAX_TRUST_LIST_BYTES,
    check_trust_list,
    decode_payload,
    load_pem_roots,
    parse_trust_list,
    verify_signed_qr,
)

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNUSABLE = 2
#: Largest image or PDF read, and the pixel budget of an image (a 50-megapixel photo).
MAX_INPUT_BYTES = 50 * 1024 * 1024
MAX_IMAGE_PIXELS = 50_000_000
FACT_LABELS = (
    ("code", "报告标识码 code"),
    ("report_no", "报告编号 report no."),
    ("institution", "检测机构 USCC"),
    ("conclusion", "检测结论 conclusion"),
    ("issued_on", "签发日期 issued on"),
    ("original_sha256", "原始文件 SHA-256"),
    ("sealed_at", "签章时间 sealed at"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jianzheng-verify qr",
        description="Check the signed QR payload of a report offline (no network).",
    )
    parser.add_argument("input", metavar="IMAGE_OR_TEXT",
                        help="a photo/scan/PDF of the report, a file with the QR text, "
                        "or the QR text itself")
    parser.add_argument("--trust-list", required=True, metavar="FILE",
                        help="the platform's trust list (GET /ca/trust-list.json)")
    parser.add_argument("--trust-roots", metavar="ROOTS.pem",
                        help="also check the trust list's signature against these roots")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    return parser


class Unusable(Exception):
    pass


def _decode_image(data: bytes) -> list[str]:
    import warnings

    import zxingcpp
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    qr_only = zxingcpp.barcode_formats_from_str("QRCode")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                gray = ImageOps.exif_transpose(img).convert("L")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        raise Unusable("not a readable image") from None
    variants = [gray]
    for side in (2000, 1200):
        if max(gray.size) > side * 1.2:
            small = gray.copy()
            small.thumbnail((side, side))
            variants.append(small)
    variants.append(ImageOps.autocontrast(gray))
    for variant in variants:
        texts = [b.text for b in zxingcpp.read_barcodes(variant, formats=qr_only) if b.valid]
        if texts:
            return texts
    return []


def _decode_pdf(data: bytes) -> list[str]:
    from verifier.pdf import PdfUnreadable, _decode_pages

    try:
        pages = _decode_pages(data, 3, pad=False)
    except PdfUnreadable as exc:
        raise Unusable(str(exc)) from None
    return [t for page in pages for t in page]


def qr_texts(arg: str) -> list[str]:
    """The QR texts IMAGE_OR_TEXT stands for (Unusable when there are none)."""
    path = Path(arg)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # e.g. a QR text longer than a file name may be
        is_file = False
    if is_file:
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            raise Unusable(f"cannot read {arg}: {exc.strerror}") from None
        if len(data) > MAX_INPUT_BYTES:
            raise Unusable("the file is too large")
        if data.startswith(b"%PDF-"):
            texts = _decode_pdf(data)
        elif data[:8].startswith((b"\x89PNG", b"\xff\xd8", b"GIF8", b"II*\x00", b"MM\x00*",
                                  b"RIFF", b"BM")):
            texts = _decode_image(data)
        else:
            try:
                text = data[: MAX_QR_TEXT * 4].decode("utf-8").strip()
            except UnicodeDecodeError:
                raise Unusable("the file is neither an image, a PDF nor text") from None
            texts = [text] if text else []
        if not texts:
            raise Unusable("no QR code found")
        return texts
    return [arg]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with open(args.trust_list, "rb") as fh:
            trust = parse_trust_list(fh.read(MAX_TRUST_LIST_BYTES + 1))
        roots = None
        if args.trust_roots:
            roots = load_pem_roots(Path(args.trust_roots).read_bytes())
    except OSError as exc:
        return _unusable(args, f"cannot read the trust list or roots: {exc.strerror}")
    except (InvalidTrustList, ValueError) as exc:
        return _unusable(args, f"trust list or roots unusable: {exc}")
    try:
        texts = qr_texts(args.input)
    except Unusable as exc:
        return _unusable(args, str(exc))
    problems: list[str] = []
    for text in texts:
        try:
            signed = decode_payload(text)
        except InvalidQr as exc:
            problems.append(f"{exc.message} [{exc.code}]")
            continue
        result = verify_signed_qr(signed, trust)
        checks: list[Check] = []
        if roots is not None:
            checks.append(check_trust_list(trust, roots))
        else:
            checks.append(Check("trust_list", True, "the trust list's signature was not "
                                "checked (no --trust-roots)", warning=True))
        checks += result.checks
        ok = all(c.ok for c in checks)
        _print(args, ok, checks, result.facts.as_json(), signed.kid_hex)
        return EXIT_VALID if ok else EXIT_INVALID
    return _unusable(args, "; ".join(problems) or "no QR text")


def _unusable(args: argparse.Namespace, why: str) -> int:
    if args.json:
        print(json.dumps({"result": "unusable", "error": why}, ensure_ascii=False))
    else:
        print(f"FAIL  {'input':<13} unusable input: {why}")
        print("RESULT  UNUSABLE INPUT")
    return EXIT_UNUSABLE


def _print(args: argparse.Namespace, ok: bool, checks: list[Check], facts: dict[str, object],
           kid: str) -> None:
    if args.json:
        print(json.dumps({
            "result": "valid" if ok else "invalid",
            "kid": kid,
            "facts": facts,
            "checks": [{"status": c.status, "name": c.name, "detail": c.detail} for c in checks],
        }, ensure_ascii=False))
        return
    for c in checks:
        print(f"{c.status:<5} {c.name:<13} {c.detail}")
    print("-- signed facts (compare them with the paper report / 请与纸质报告核对):")
    for key, label in FACT_LABELS:
        value = facts[key]
        if key == "sealed_at" and isinstance(value, int):
            import datetime as dt

            when = dt.datetime.fromtimestamp(value, dt.timezone(dt.timedelta(hours=8)))
            value = f"{value} ({when:%Y-%m-%d %H:%M:%S} 北京时间)"
        print(f"   {label:<22} {value}")
    print(f"RESULT  {'VALID' if ok else 'INVALID'} (key {kid})")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["main"]
