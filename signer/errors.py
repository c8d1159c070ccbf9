"""Errors raised by the signer package.

One root error (:class:`SignerError`); every subclass carries a stable machine-readable
``code`` and a human sentence. Messages never contain key material, PINs or passphrases.
"""

from __future__ import annotations


class SignerError(Exception):
    """Root of all errors raised by :mod:`signer`."""

    code: str = "signer_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class PdfRejected(SignerError):
    """The uploaded PDF cannot be sealed (client error; maps to a 4xx answer).

    Stable codes: ``pdf_invalid``, ``pdf_encrypted``, ``pdf_damaged``, ``pdf_empty``,
    ``pdf_too_large``, ``pdf_too_complex``.
    """

    CODES = frozenset(
        {
            "pdf_invalid",
            "pdf_encrypted",
            "pdf_damaged",
            "pdf_empty",
            "pdf_too_large",
            "pdf_too_complex",
        }
    )

    def __init__(self, code: str, message: str) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown PdfRejected code {code!r}")
        super().__init__(message, code=code)


class KeySourceError(SignerError):
    """A signing key or its certificate could not be loaded or used."""

    code = "key_unavailable"


class CaError(SignerError):
    """The development CA could not be created or read."""

    code = "ca_error"


class TimestampError(SignerError):
    """A time-stamp could not be obtained from the configured TSA."""

    code = "timestamp_unavailable"


class SealingError(SignerError):
    """Sealing failed for a reason that is not the input's fault (server side)."""

    code = "sealing_failed"
