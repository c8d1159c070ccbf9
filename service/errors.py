"""The service's one root error: an RFC 9457 problem with a stable `code`.

Domain code raises `ProblemError`; the HTTP layer turns it into
`application/problem+json` in one place (service/api/problems.py).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extra = extra

    def as_problem(self) -> dict[str, Any]:
        return {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
            **self.extra,
        }
