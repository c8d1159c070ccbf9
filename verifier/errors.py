"""Errors of the verifier package.

Only malformed input raises: a proof or bundle that cannot be parsed, a value that has no
canonical form, a chain endpoint that cannot be used. A check that runs and fails is a typed
result (see ``verifier.models``), never an exception. Every error carries a stable,
machine-readable ``code`` and a human sentence (``message``).
"""

from __future__ import annotations


class VerifierError(Exception):
    """Root of every error the verifier raises on purpose."""

    default_code = "verifier_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"


class CanonicalizationError(VerifierError):
    """A value has no RFC 8785 canonical form, or JSON text is not strict I-JSON."""

    default_code = "not_canonicalizable"


class InvalidProof(VerifierError):
    """A ``jianzheng-proof/1`` document (or a Merkle audit path) is malformed."""

    default_code = "invalid_proof"


class InvalidBundle(VerifierError):
    """A ``jianzheng-bundle/1`` ZIP is malformed, too large or of an unknown format."""

    default_code = "invalid_bundle"


class ChainError(VerifierError):
    """A JSON-RPC endpoint could not be used.

    ``code`` is ``chain_unreachable`` (network, timeout, HTTP failure), ``rpc_error`` (the node
    answered with a JSON-RPC error; ``rpc_code``/``rpc_data`` hold its details),
    ``bad_rpc_response`` (the answer is not what the method returns) or ``bad_rpc_url``.
    """

    default_code = "chain_unreachable"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        rpc_code: int | None = None,
        rpc_data: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.rpc_code = rpc_code
        self.rpc_data = rpc_data

    @property
    def unreachable(self) -> bool:
        """True when the endpoint could not be reached at all (as opposed to a bad answer)."""
        return self.code == "chain_unreachable"


class InvalidQr(VerifierError):
    """A QR text that is not a signed payload of §7.5 (unusable input, not a forgery)."""

    default_code = "invalid_qr"


class InvalidTrustList(VerifierError):
    """A trust list (`jianzheng-trust/1`) that cannot be parsed."""

    default_code = "invalid_trust_list"
