"""The platform's signing CA and the roots a verifier of our PDFs should trust.

In development the platform runs its own CA (`signer.ca.DevCA`, under `var/ca`). In
production the seals usually come from a licensed CA (电子认证服务机构) through PKCS#11
and the time-stamps from an external TSA: their roots are listed in the PEM file
`signing.trust_roots_file` and are trusted in addition to the platform's own root —
by the public page's signature check, by B-LT validation, as the chain added to PKCS#11
signatures, and in what `GET /ca/roots.pem` and `jianzheng ca roots` publish.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import Encoding

from service.settings import Settings
from signer.ca import DevCA

_SHA256 = SHA256()


def platform_ca(settings: Settings, *, crl_url: str | None = None) -> DevCA:
    base = settings.public.base_url.rstrip("/")
    return DevCA(
        settings.ca_dir,
        passphrase=settings.signing.ca_passphrase.get_secret_value().encode("utf-8"),
        crl_url=crl_url or f"{base}/ca/root.crl",
    )


def load_extra_roots(path: str) -> list[x509.Certificate]:
    """The certificates of `signing.trust_roots_file` (ValueError if unusable)."""
    if not path:
        return []
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"signing.trust_roots_file {path!r} cannot be read: {exc}") from exc
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"signing.trust_roots_file {path!r} is not PEM certificates") from exc
    if not certs:
        raise ValueError(f"signing.trust_roots_file {path!r} holds no certificate")
    return certs


def trust_roots(settings: Settings, ca: DevCA | None = None) -> list[x509.Certificate]:
    """The platform's root, then each extra root once."""
    roots = [(ca or platform_ca(settings)).root_certificate]
    seen = {roots[0].fingerprint(_SHA256)}
    for cert in load_extra_roots(settings.signing.trust_roots_file):
        fp = cert.fingerprint(_SHA256)
        if fp not in seen:
            seen.add(fp)
            roots.append(cert)
    return roots


def trust_roots_pem(settings: Settings, ca: DevCA | None = None) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in trust_roots(settings, ca))


def trust_roots_der(settings: Settings, ca: DevCA | None = None) -> list[bytes]:
    return [c.public_bytes(Encoding.DER) for c in trust_roots(settings, ca)]
