"""Key sources: where a seal (or TSA) key lives, behind one interface.

The PDF code only ever asks a :class:`KeySource` for a pyHanko
:class:`~pyhanko.sign.signers.Signer` (or for a raw signature); it never sees key material.

* :class:`PKCS12KeySource` -- a PKCS#12 file (development CA, or a file from a licensed CA).
  The key is parsed once and cached (pyHanko's ``SimpleSigner`` re-parses it on every call,
  which costs ~70 ms per RSA signature).
* :class:`PKCS11Signer`-backed :class:`PKCS11KeySource` -- a token (SoftHSM in tests, an HSM in
  production). EC keys are signed with the raw ``CKM_ECDSA`` mechanism on pre-hashed data,
  because SoftHSM 2.6 lacks ``CKM_ECDSA_SHA256``.

Errors never include key bytes, PINs or passphrases.
"""

from __future__ import annotations

import asyncio
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509 as pyca_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.sign.attributes import CMSAttributeProvider, SigningCertificateV2Provider
from pyhanko.sign.signers import Signer, SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from .errors import KeySourceError

MAX_KEY_FILE_BYTES = 1 << 20

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _to_asn1(cert: pyca_x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def load_certificates(data: bytes) -> list[asn1_x509.Certificate]:
    """Certificates from PEM (one or more) or DER bytes."""
    if b"-----BEGIN" in data:
        return [_to_asn1(c) for c in pyca_x509.load_pem_x509_certificates(data)]
    return [asn1_x509.Certificate.load(data)]


class KeySource(ABC):
    """Something that can produce signatures with one certified key."""

    def __init__(self) -> None:
        # pyHanko drives signers from asyncio; PKCS#11 sessions are not thread-safe, and
        # serialising per key costs nothing measurable for file keys either.
        self.lock = threading.Lock()
        #: signature container sizes that pyHanko reserved before, per (level, TSA, LT)
        self.reservations: dict[tuple[object, ...], int] = {}

    @property
    @abstractmethod
    def signer(self) -> Signer:
        """The pyHanko signer for this key (created once, reused)."""

    @property
    def certificate(self) -> asn1_x509.Certificate:
        cert = self.signer.signing_cert
        if cert is None:
            raise KeySourceError("key source has no certificate")
        return cert

    @property
    def chain(self) -> list[asn1_x509.Certificate]:
        """The signing certificate followed by the other certificates known to the source."""
        leaf = self.certificate
        others = [c for c in self.signer.cert_registry if c.dump() != leaf.dump()]
        return [leaf, *others]

    def sign_raw(self, data: bytes, digest_algorithm: str = "sha256") -> bytes:
        """Sign ``data`` (hashing it with ``digest_algorithm``); returns the raw signature."""
        signer = self.signer
        with self.lock:
            if isinstance(signer, SimpleSigner):
                return signer.sign_raw(data, digest_algorithm)
            return run_sync(signer.async_sign_raw(data, digest_algorithm))

    def signature_algorithm(self, digest_algorithm: str = "sha256") -> Any:
        """The asn1crypto ``SignedDigestAlgorithm`` this source produces."""
        return self.signer.get_signature_mechanism_for_digest(digest_algorithm)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (sessions); the source is unusable afterwards."""

    def __enter__(self) -> KeySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _FrozenAttribute(CMSAttributeProvider):
    """Hands out a fresh parse of one attribute's DER, computed by ``inner`` once."""

    def __init__(self, inner: CMSAttributeProvider, cache: dict[bytes, bytes], key: bytes):
        self.attribute_type = inner.attribute_type
        self._inner, self._cache, self._key = inner, cache, key

    async def get_attribute(self, dry_run: bool = False) -> asn1_cms.CMSAttribute | None:
        der = self._cache.get(self._key)
        if der is None:
            attr = await self._inner.get_attribute(dry_run=False)
            if attr is None:
                return None
            der = self._cache.setdefault(self._key, attr.dump())
        return asn1_cms.CMSAttribute.load(der)


class FastCmsMixin:
    """CMS assembly without asn1crypto's repeated re-encoding; the DER is pyHanko's own.

    asn1crypto re-serialises a value built from Python dicts (not parsed from DER) on
    every ``dump()``, recursively, so pyHanko's SignerInfo assembly encodes the
    signing-certificate-v2 attribute (a copy of the certificate's issuer name) and the
    signed attributes many times over: ~8 ms of the ~9 ms a B-B CMS costs. Here the
    attribute, which depends only on the signing certificate, is encoded once per
    certificate, and the signed attributes and the SignerInfo are re-parsed from their DER
    once built (a parsed value dumps its cached bytes). Byte for byte the same output
    (tests/test_signer_keys_cms.py compares it with pyHanko's stock assembly).
    """

    _frozen_attrs: dict[bytes, bytes]

    def _signed_attr_providers(self, *args: Any, **kwargs: Any) -> Any:
        cache = self.__dict__.setdefault("_frozen_attrs", {})
        for prov in super()._signed_attr_providers(*args, **kwargs):  # type: ignore[misc]
            if type(prov) is SigningCertificateV2Provider:
                yield _FrozenAttribute(prov, cache, prov.signing_cert.dump())
            else:
                yield prov

    async def signed_attrs(self, *args: Any, **kwargs: Any) -> asn1_cms.CMSAttributes:
        attrs = await super().signed_attrs(*args, **kwargs)  # type: ignore[misc]
        return asn1_cms.CMSAttributes.load(attrs.dump())

    def signer_info(self, *args: Any, **kwargs: Any) -> asn1_cms.SignerInfo:
        info = super().signer_info(*args, **kwargs)  # type: ignore[misc]
        return asn1_cms.SignerInfo.load(info.dump())


class _CachedKeySigner(SimpleSigner):
    """A ``SimpleSigner`` that keeps the parsed private key instead of re-parsing it."""

    def __init__(
        self, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._pyca_key = key

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
        algo = mechanism.signature_algo
        key = self._pyca_key
        if algo == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(get_pyca_cryptography_hash(digest_algorithm)))
        if algo == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))
        return super().sign_raw(data, digest_algorithm)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.subject_name!r}>"


class _SealSigner(FastCmsMixin, _CachedKeySigner):
    """The file-key signer the key sources hand out: cached key, fast CMS assembly."""


def stock_cms_signer(signer: Signer) -> SimpleSigner:
    """The same key and certificates as a file-key ``signer``, with pyHanko's own CMS
    assembly (and the key parsed once): the gauge of bench/seal.py, and the reference
    the tests compare our CMS output with."""
    if not isinstance(signer, _CachedKeySigner):
        raise KeySourceError("only file-key signers have a stock counterpart")
    return _CachedKeySigner(
        signer._pyca_key,  # noqa: SLF001 - same module
        signing_cert=signer.signing_cert,
        signing_key=signer.signing_key,
        cert_registry=signer.cert_registry,
        embed_roots=signer.embed_roots,
    )


class PKCS12KeySource(KeySource):
    """A key and certificate chain from a PKCS#12 file, parsed once."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        passphrase: bytes | None,
        extra_certs: Iterable[asn1_x509.Certificate | pyca_x509.Certificate] = (),
    ) -> None:
        super().__init__()
        self.path = Path(path)
        try:
            if self.path.stat().st_size > MAX_KEY_FILE_BYTES:
                raise KeySourceError(f"key file {self.path} is too large")
            data = self.path.read_bytes()
        except OSError as exc:
            raise KeySourceError(f"key file {self.path} unreadable: {exc.strerror}") from None
        try:
            key, cert, others = pkcs12.load_key_and_certificates(data, passphrase)
        except (ValueError, TypeError):
            # The underlying message may say which part failed; it never holds key bytes,
            # but we do not chain it anyway to keep the passphrase path out of tracebacks.
            raise KeySourceError(
                f"key file {self.path} could not be decrypted (wrong passphrase or damaged)"
            ) from None
        if key is None or cert is None:
            raise KeySourceError(f"key file {self.path} holds no key and certificate")
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise KeySourceError(f"key file {self.path}: only EC and RSA keys are supported")
        # pyhanko-certvalidator leaves SimpleCertificateStore.__init__ unannotated
        store = SimpleCertificateStore()  # type: ignore[no-untyped-call]
        store.register_multiple(_to_asn1(c) for c in others)
        for c in extra_certs:
            store.register(c if isinstance(c, asn1_x509.Certificate) else _to_asn1(c))
        leaf = _to_asn1(cert)
        store.register(leaf)
        pkinfo = _private_key_info(key)
        # Roots are pinned by verifiers; leaving them out keeps the CMS small and fast.
        self._signer = _SealSigner(
            key, signing_cert=leaf, signing_key=pkinfo, cert_registry=store, embed_roots=False
        )

    @property
    def signer(self) -> Signer:
        return self._signer

    def __repr__(self) -> str:
        return f"PKCS12KeySource({str(self.path)!r})"


_PKCS11_CLASSES: dict[type, type] = {}


def _pkcs11_signer_class(base: type) -> Any:
    """``base`` (pyHanko's PKCS11Signer, imported lazily) with the fast CMS assembly."""
    cls = _PKCS11_CLASSES.get(base)
    if cls is None:
        cls = _PKCS11_CLASSES.setdefault(base, type("_PKCS11SealSigner", (FastCmsMixin, base), {}))
    return cls


def _private_key_info(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> Any:
    from asn1crypto import keys as asn1_keys

    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return asn1_keys.PrivateKeyInfo.load(der)


class PKCS11KeySource(KeySource):
    """A key held in a PKCS#11 token; one logged-in session, opened lazily and kept open."""

    def __init__(
        self,
        lib_path: str,
        *,
        token_label: str,
        user_pin: str,
        key_label: str,
        cert_label: str | None = None,
        certificate: asn1_x509.Certificate | None = None,
        extra_certs: Iterable[asn1_x509.Certificate] = (),
        use_raw_mechanism: bool | None = None,
    ) -> None:
        super().__init__()
        self.lib_path = lib_path
        self.token_label = token_label
        self.key_label = key_label
        self.cert_label = cert_label or key_label
        self._pin = user_pin
        self._certificate = certificate
        self._extra_certs = list(extra_certs)
        self._use_raw = use_raw_mechanism
        self._session: Any = None
        self._signer: Signer | None = None
        self._open_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PKCS11KeySource(token={self.token_label!r}, key={self.key_label!r})"

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            with self._open_lock:
                if self._signer is None:
                    self._signer = self._open()
        return self._signer

    def _open(self) -> Signer:
        from pyhanko.config.pkcs11 import TokenCriteria
        from pyhanko.sign.pkcs11 import PKCS11Signer, open_pkcs11_session

        try:
            session = open_pkcs11_session(
                self.lib_path,
                token_criteria=TokenCriteria(label=self.token_label),
                user_pin=self._pin,
            )
        except Exception as exc:
            raise KeySourceError(
                f"PKCS#11 token {self.token_label!r} could not be opened "
                f"({type(exc).__name__})"
            ) from None
        self._session = session
        use_raw = self._use_raw
        try:
            signer: PKCS11Signer = _pkcs11_signer_class(PKCS11Signer)(
                session,
                cert_label=None if self._certificate is not None else self.cert_label,
                signing_cert=self._certificate,
                key_label=self.key_label,
                ca_chain=self._extra_certs,
                use_raw_mechanism=False,
                embed_roots=False,
            )
            cert = signer.signing_cert
            if use_raw is None:
                use_raw = cert.public_key.algorithm == "ec"
            signer.use_raw_mechanism = use_raw
        except Exception as exc:
            self.close()
            raise KeySourceError(
                f"PKCS#11 key {self.key_label!r} or its certificate not usable "
                f"({type(exc).__name__})"
            ) from None
        return signer

    def close(self) -> None:
        session, self._session, self._signer = self._session, None, None
        if session is not None:
            try:
                session.close()
            except Exception:  # closing is best effort
                pass
