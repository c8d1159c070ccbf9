"""The service's one root error, `JianzhengError`: a stable `code` and a human `detail`.

Domain code raises a subclass that says what kind of failure it is (`NotFound`,
`Conflict`, ...) with the stable problem code of INTERFACE §5 and a sentence for the
caller; it knows nothing of HTTP. The API layer maps codes to HTTP statuses in one table
(service/api/problems.py `STATUS_BY_CODE`) and renders RFC 9457 problem+json there.

Keyword arguments beyond `detail` are machine-readable facts added to the problem body
(e.g. `parent=`, `corrected_by=`); `retry_after_s` says when a retry may succeed.
"""

from __future__ import annotations

from typing import Any, ClassVar


class JianzhengError(Exception):
    """Root of every error the service reports to a caller."""

    #: What kind of failure this is; the HTTP layer checks its table agrees (tests).
    kind: ClassVar[str] = "error"

    def __init__(
        self, code: str, detail: str, *, retry_after_s: float | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after_s = retry_after_s
        self.extra = extra

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.detail!r})"


class BadRequest(JianzhengError):
    """The request cannot be understood as sent (framing, headers, arguments)."""

    kind = "bad_request"


class Invalid(JianzhengError):
    """The request is well formed but breaks a rule (a field, a parent, a state)."""

    kind = "invalid"


class AuthFailed(JianzhengError):
    """The request is not signed by a known, active key (INTERFACE §5.1)."""

    kind = "unauthenticated"


class Forbidden(JianzhengError):
    """A known caller acting outside its institution, region or role."""

    kind = "forbidden"


class NotFound(JianzhengError):
    kind = "not_found"


class Conflict(JianzhengError):
    """The request contradicts what is already recorded."""

    kind = "conflict"


class Gone(JianzhengError):
    kind = "gone"


class TooLarge(JianzhengError):
    kind = "too_large"


class UnsupportedMediaType(JianzhengError):
    kind = "unsupported_media_type"


class RateLimited(JianzhengError):
    kind = "rate_limited"


class Unavailable(JianzhengError):
    """A dependency (database, chain, TSA, signing key) is away; retrying may work."""

    kind = "unavailable"


class IntegrityFault(JianzhengError):
    """Stored data or configuration is broken: an operator must look."""

    kind = "integrity"
