"""The work on a file someone sent to `POST /api/v1/public/verify`, in a sandbox child.

Parsing, validating and rendering a stranger's PDF (or decoding a stranger's image) is
where a hostile file bites: a huge page, a flate bomb, a pixel bomb, a parser that
recurses or loops. All of it runs here, in a child of `service.sandbox.Sandbox` whose
address space and time are capped, so a hostile file costs one bounded child and never
the API process. The child gets plain facts (the file, the trusted roots' DER, the
platform certificate's SHA-256) and hands back plain facts (`PdfFacts`); the verdict is
decided in the API process from them and the database (service.domain.public.verify).

Only the pages needed are rendered: the verdict needs the report code the first page's
QR names (every page of a sealed copy carries the same one), so one page is rendered,
within verifier.pdf's pixel budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.errors import Unavailable
from service.sandbox import Sandbox, SandboxBusy, SandboxFailed
from service.settings import Settings

if TYPE_CHECKING:
    from service.domain.signing import ReportSigner

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait when every checking slot is taken.
BUSY_RETRY_AFTER_S = 2.0
#: Pages of a sent PDF whose QR code is read (the verdict needs the code it names).
QR_PAGES = 1
#: Modules the sandbox's fork server imports once, so that a child starts at once.
PRELOAD = (
    "verifier.pdf",
    "pypdfium2",
    "zxingcpp",
    "PIL.Image",
    "pyhanko.pdf_utils.reader",
    "pyhanko.sign.validation",
    "service.domain.certificate",
    "service.domain.public.verdicts",
    "service.domain.public.images",
    "service.domain.public.untrusted",
)


@dataclass(frozen=True)
class PdfFacts:
    """What the child learnt about a sent PDF."""

    #: (verdict, code, detail) when it is (or claims to be) an evidence certificate.
    certificate: tuple[str, str | None, str] | None = None
    #: Why it cannot be read (not parseable, not renderable, beyond the limits), or None.
    unreadable: str | None = None
    signed: bool = False
    trusted: bool = False
    issued_by_us: bool = False
    qr_codes: tuple[str | None, ...] = ()
    finding_codes: tuple[str, ...] = ()


def pdf_facts(
    data: bytes, roots_der: list[bytes], platform_cert_sha256: bytes, require_timestamp: bool
) -> PdfFacts:
    """The sandboxed work on a PDF: the certificate check, then verifier.pdf's checks with
    the QR read on the first page only, then whether our root issued the signer."""
    from service.domain.certificate import certificate_verdict_of
    from service.domain.public.verdicts import issued_by
    from verifier.pdf import PdfUnreadable, verify_sealed_pdf

    cert = certificate_verdict_of(data, platform_cert_sha256, roots_der)
    if cert is not None:
        return PdfFacts(certificate=cert)
    try:
        result = verify_sealed_pdf(
            data, roots_der, require_timestamp=require_timestamp, qr_pages=QR_PAGES
        )
    except PdfUnreadable:
        return PdfFacts(unreadable="the PDF could not be read")
    except (RecursionError, MemoryError):
        return PdfFacts(unreadable="the PDF is too complex to read within the limits")
    except Exception as exc:  # noqa: BLE001 - whatever a parser trips on: unreadable
        log.warning("a sent PDF tripped the checks: %s", type(exc).__name__)
        return PdfFacts(unreadable="the PDF could not be read")
    return PdfFacts(
        signed=result.signed,
        trusted=result.trusted,
        issued_by_us=bool(result.signed and not result.trusted and issued_by(data, roots_der)),
        qr_codes=result.qr_codes,
        finding_codes=tuple(sorted(str(c) for c in result.finding_codes)),
    )


def image_qr_texts(data: bytes, max_pixels: int) -> tuple[tuple[str, ...], str | None]:
    """The sandboxed work on an image: (QR texts, None), or ((), why it is unreadable)."""
    from service.domain.public.images import (
        QR_MAX_SIDE,
        ImageUnreadable,
        decode_qr_texts,
        open_image,
    )

    try:
        image = open_image(data, max_pixels, QR_MAX_SIDE)
        return tuple(decode_qr_texts(image)), None
    except ImageUnreadable:
        return (), "not a readable PDF or image (JPEG, PNG, WebP, TIFF, BMP, GIF)"
    except MemoryError:
        return (), failure_reason(SandboxFailed("memory", ""))
    except Exception as exc:  # noqa: BLE001 - the QR decoder tripped: unreadable
        log.warning("a sent image tripped the QR search: %s", type(exc).__name__)
        return (), "the image could not be read"


def failure_reason(failed: SandboxFailed) -> str:
    """The public detail of a child that ran out of memory or time, or died."""
    if failed.reason == "memory":
        return "the file needs more memory to check than the platform allows"
    if failed.reason == "time":
        return "the file takes longer to check than the platform allows"
    return "the file could not be checked"


class UntrustedWork:
    """The sandbox plus what the sandboxed checks need, as the API process knows it."""

    def __init__(
        self,
        sandbox: Sandbox,
        roots_der: list[bytes],
        platform_cert_sha256: bytes,
        require_timestamp: bool,
        max_image_pixels: int,
    ) -> None:
        self.sandbox = sandbox
        self.max_image_pixels = max_image_pixels
        self.roots_der = roots_der
        self.platform_cert_sha256 = platform_cert_sha256
        self.require_timestamp = require_timestamp

    def pdf(self, data: bytes) -> PdfFacts:
        """`pdf_facts` in a capped child. Raises Unavailable `verify_busy` when every slot
        is taken; a child that fails (memory, time, crash) makes the file unreadable."""
        try:
            return self.sandbox.run(
                pdf_facts, data, self.roots_der, self.platform_cert_sha256,
                self.require_timestamp,
            )
        except SandboxFailed as failed:
            return PdfFacts(unreadable=failure_reason(failed))
        except SandboxBusy:
            raise busy() from None

    def image(self, data: bytes) -> tuple[tuple[str, ...], str | None]:
        """`image_qr_texts` in a capped child (Unavailable `verify_busy` when full)."""
        try:
            return self.sandbox.run(image_qr_texts, data, self.max_image_pixels)
        except SandboxFailed as failed:
            return (), failure_reason(failed)
        except SandboxBusy:
            raise busy() from None


def busy() -> Unavailable:
    """503 `verify_busy`: every slot that checks sent files is taken."""
    return Unavailable(
        "verify_busy",
        "every slot that checks sent files is busy; try again shortly",
        retry_after_s=BUSY_RETRY_AFTER_S,
    )


def untrusted_work(settings: Settings, signer: ReportSigner) -> UntrustedWork:
    """The public verify route's sandbox, sized by `JZ_PUBLIC__VERIFY_*`."""
    from service.domain.trust import trust_roots_der

    public = settings.public
    sandbox = Sandbox(
        memory_bytes=public.verify_memory_mb * 1024 * 1024,
        timeout_s=public.verify_timeout_s,
        concurrency=public.verify_concurrency,
        preload=PRELOAD,
    )
    cert = signer.platform_key().signer.signing_cert
    return UntrustedWork(
        sandbox,
        trust_roots_der(settings, signer.ca),
        cert.sha256 if cert is not None else b"",
        require_timestamp=settings.signing.level != "B-B",
        max_image_pixels=public.max_image_pixels,
    )
