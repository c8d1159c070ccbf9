"""Development certificate authority, generated on first run.

Layout under the CA directory (default ``var/ca/``)::

    root.pem           root certificate (the trust anchor verifiers pin)
    root-key.pem       root private key, PKCS#8, encrypted with the CA passphrase
    root.crl           the root's CRL (DER), for PAdES B-LT validation data
    tsa.p12            time-stamping key + certificate (EKU timeStamping, critical)
    seals/<USCC>.p12   one seal key + certificate per institution (EC P-256)

Everything is created once and reused afterwards (idempotent, safe against concurrent
first runs through a file lock). Production imports certificates from a licensed CA
instead; nothing outside this module depends on how they were made.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CaError
from .keys import PKCS12KeySource

DEFAULT_CA_DIR = Path("var/ca")
DEV_PASSPHRASE = b"jianzheng-dev-ca"
ROOT_VALIDITY = dt.timedelta(days=20 * 365)
LEAF_VALIDITY = dt.timedelta(days=5 * 365)
CRL_VALIDITY = dt.timedelta(days=30)
CLOCK_SKEW = dt.timedelta(hours=1)
DEFAULT_CRL_URL = "http://127.0.0.1:8000/ca/root.crl"
ROOT_COMMON_NAME = "Jianzheng Development Root CA"
TSA_COMMON_NAME = "Jianzheng Development TSA"
#: Extended key usage of a QR-payload signing certificate (INTERFACE §7.5); a private
#: OID under the UUID arc (ITU-T X.667), so no other certificate of the CA qualifies.
QR_SIGNING_EKU = x509.ObjectIdentifier("2.25.86313743563536777953511747124764565796")
#: Extended key usage of the certificate that signs evidence certificates (存证证书, §7.6).
EVIDENCE_CERTIFICATE_EKU = x509.ObjectIdentifier("2.25.155887656485600831688211456921977656983")

_USCC = re.compile(r"^[0-9A-Z]{18}$")
_MAX_NAME = 128


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _atomic_write(path: Path, data: bytes, *, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DevCA:
    """The development CA rooted at ``directory``; created on first use.

    ``passphrase`` protects the root key and every PKCS#12 file; it is never logged.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] = DEFAULT_CA_DIR,
        *,
        passphrase: bytes = DEV_PASSPHRASE,
        crl_url: str = DEFAULT_CRL_URL,
    ) -> None:
        self.directory = Path(directory)
        self._passphrase = passphrase
        self.crl_url = crl_url
        self._root_cert: x509.Certificate | None = None
        self._root_key: ec.EllipticCurvePrivateKey | None = None
        with self._locked():
            self._ensure_root()

    def __repr__(self) -> str:
        return f"DevCA({str(self.directory)!r})"

    # -- paths -------------------------------------------------------------------------------
    @property
    def root_path(self) -> Path:
        return self.directory / "root.pem"

    @property
    def crl_path(self) -> Path:
        return self.directory / "root.crl"

    @property
    def tsa_path(self) -> Path:
        return self.directory / "tsa.p12"

    def seal_path(self, uscc: str) -> Path:
        return self.directory / "seals" / f"{_check_uscc(uscc)}.p12"

    # -- public API --------------------------------------------------------------------------
    @property
    def root_certificate(self) -> x509.Certificate:
        assert self._root_cert is not None
        return self._root_cert

    def roots_pem(self) -> bytes:
        """PEM of the certificates a verifier should trust (seal and TSA chains)."""
        return self.root_certificate.public_bytes(serialization.Encoding.PEM)

    def crl_der(self) -> bytes:
        """The root's current CRL (DER); reissued when it is about to expire."""
        with self._locked():
            if self.crl_path.exists():
                data = self.crl_path.read_bytes()
                crl = x509.load_der_x509_crl(data)
                next_update = crl.next_update_utc
                if next_update is not None and next_update - _now() > CRL_VALIDITY / 3:
                    return data
            data = self._issue_crl()
            _atomic_write(self.crl_path, data, private=False)
            return data

    def seal_subject(self, uscc: str, name: str) -> x509.Name:
        """Subject of an institution's seal certificate: name + USCC (organizationIdentifier
        ``NTRCN-<USCC>``, the ETSI EN 319 412-1 form for a national trade register)."""
        name = _check_name(name)
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"NTRCN-{_check_uscc(uscc)}"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )

    def issue_seal_certificate(
        self, uscc: str, name: str, public_key: ec.EllipticCurvePublicKey
    ) -> x509.Certificate:
        """A seal certificate for a key held elsewhere (e.g. generated inside an HSM)."""
        subject = self.seal_subject(uscc, name)
        with self._locked():
            return self._issue_cert(subject, public_key, tsa=False)

    def seal_credential(self, uscc: str, name: str) -> Path:
        """Path of the institution's seal PKCS#12 file, issuing it on first use."""
        path = self.seal_path(uscc)
        if path.exists():
            return path
        subject = self.seal_subject(uscc, name)
        with self._locked():
            if not path.exists():
                self._issue_p12(path, subject, name=f"seal {uscc}", tsa=False)
        return path

    def tsa_credential(self) -> Path:
        """Path of the time-stamping authority's PKCS#12 file, issuing it on first use."""
        if self.tsa_path.exists():
            return self.tsa_path
        with self._locked():
            if not self.tsa_path.exists():
                subject = x509.Name(
                    [
                        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Jianzheng"),
                        x509.NameAttribute(NameOID.COMMON_NAME, TSA_COMMON_NAME),
                    ]
                )
                self._issue_p12(self.tsa_path, subject, name="tsa", tsa=True)
        return self.tsa_path

    def seal_key_source(self, uscc: str, name: str) -> PKCS12KeySource:
        """A key source for the institution's seal key (cached parsed key)."""
        return PKCS12KeySource(
            self.seal_credential(uscc, name),
            passphrase=self._passphrase,
            extra_certs=[self.root_certificate],
        )

    def tsa_key_source(self) -> PKCS12KeySource:
        return PKCS12KeySource(
            self.tsa_credential(),
            passphrase=self._passphrase,
            extra_certs=[self.root_certificate],
        )

    def issue_qr_certificate(
        self, public_key: ec.EllipticCurvePublicKey, label: str
    ) -> x509.Certificate:
        """A certificate for a QR-payload signing key (EKU :data:`QR_SIGNING_EKU`)."""
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Jianzheng"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Jianzheng QR signing {label}"[:64]),
            ]
        )
        with self._locked():
            return self._issue_cert(subject, public_key, tsa=False, eku=QR_SIGNING_EKU)

    @property
    def platform_path(self) -> Path:
        return self.directory / "platform.p12"

    def platform_key_source(self) -> PKCS12KeySource:
        """The platform's own signing key (EKU :data:`EVIDENCE_CERTIFICATE_EKU`), which seals
        the evidence certificates it issues; created on first use."""
        if not self.platform_path.exists():
            with self._locked():
                if not self.platform_path.exists():
                    subject = x509.Name(
                        [
                            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Jianzheng"),
                            x509.NameAttribute(
                                NameOID.COMMON_NAME, "Jianzheng Evidence Certificates"
                            ),
                        ]
                    )
                    self._issue_p12(
                        self.platform_path, subject, name="platform", tsa=False,
                        eku=EVIDENCE_CERTIFICATE_EKU,
                    )
        return PKCS12KeySource(
            self.platform_path, passphrase=self._passphrase, extra_certs=[self.root_certificate]
        )

    def root_sign(self, data: bytes) -> bytes:
        """ES256 with the root key over ``data``: DER ECDSA-Sig-Value. The root signs
        lists of keys (the QR trust list) the way it signs its CRL."""
        assert self._root_key is not None
        return self._root_key.sign(data, ec.ECDSA(hashes.SHA256()))

    def private_key_pem(self, key: ec.EllipticCurvePrivateKey) -> bytes:
        """``key`` as PKCS#8 PEM encrypted with the CA passphrase."""
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        )

    def seal_secret(self, data: bytes) -> bytes:
        """``data`` encrypted with the CA passphrase (scrypt, AES-256-GCM): for key material
        `cryptography` cannot serialise itself (an SM2 scalar, signer/sm2qr.py)."""
        salt, nonce = os.urandom(16), os.urandom(12)
        return b"JZSEAL1" + salt + nonce + AESGCM(self._secret_key(salt)).encrypt(
            nonce, data, b"jianzheng-ca-secret"
        )

    def open_secret(self, blob: bytes) -> bytes:
        if not blob.startswith(b"JZSEAL1") or len(blob) < 7 + 16 + 12 + 16:
            raise CaError("a CA key file is not a sealed secret")
        salt, nonce, body = blob[7:23], blob[23:35], blob[35:]
        try:
            return AESGCM(self._secret_key(salt)).decrypt(nonce, body, b"jianzheng-ca-secret")
        except InvalidTag:
            raise CaError("a CA key file is unreadable or the passphrase is wrong") from None

    def _secret_key(self, salt: bytes) -> bytes:
        return Scrypt(salt=salt, length=32, n=2**14, r=8, p=1).derive(self._passphrase)

    def load_private_key_pem(self, data: bytes) -> ec.EllipticCurvePrivateKey:
        try:
            key = serialization.load_pem_private_key(data, password=self._passphrase)
        except (ValueError, TypeError):
            raise CaError("a CA key file is unreadable or the passphrase is wrong") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError("a CA key file does not hold an EC key")
        return key

    # -- internals ---------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / ".lock", "a+b") as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        except OSError as exc:
            raise CaError(f"CA directory {self.directory} is not usable: {exc.strerror}") from None

    def _ensure_root(self) -> None:
        key_path = self.directory / "root-key.pem"
        if self.root_path.exists() and key_path.exists():
            try:
                self._root_cert = x509.load_pem_x509_certificate(self.root_path.read_bytes())
                key = serialization.load_pem_private_key(
                    key_path.read_bytes(), password=self._passphrase
                )
            except (ValueError, TypeError):
                raise CaError(
                    f"CA root in {self.directory} is unreadable or the passphrase is wrong"
                ) from None
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise CaError("CA root key is not an EC key")
            self._root_key = key
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Jianzheng"),
                x509.NameAttribute(NameOID.COMMON_NAME, ROOT_COMMON_NAME),
            ]
        )
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + ROOT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        _atomic_write(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(self._passphrase),
            ),
            private=True,
        )
        _atomic_write(self.root_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
        self._root_cert, self._root_key = cert, key

    def _issue_p12(
        self,
        path: Path,
        subject: x509.Name,
        *,
        name: str,
        tsa: bool,
        eku: x509.ObjectIdentifier | None = None,
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._issue_cert(subject, key.public_key(), tsa=tsa, eku=eku)
        data = pkcs12.serialize_key_and_certificates(
            name.encode(),
            key,
            cert,
            [self.root_certificate],
            serialization.BestAvailableEncryption(self._passphrase),
        )
        _atomic_write(path, data, private=True)

    def _issue_cert(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        *,
        tsa: bool,
        eku: x509.ObjectIdentifier | None = None,
    ) -> x509.Certificate:
        assert self._root_key is not None
        root = self.root_certificate
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(root.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(min(now + LEAF_VALIDITY, root.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._root_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            full_name=[x509.UniformResourceIdentifier(self.crl_url)],
                            relative_name=None,
                            reasons=None,
                            crl_issuer=None,
                        )
                    ]
                ),
                critical=False,
            )
        )
        if tsa:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
        elif eku is not None:
            usages = [eku]
            if eku == EVIDENCE_CERTIFICATE_EKU:
                # PDF validators (NSS's pdfsig) check a signer against emailProtection.
                usages.insert(0, ExtendedKeyUsageOID.EMAIL_PROTECTION)
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        return builder.sign(self._root_key, hashes.SHA256())

    def _issue_crl(self) -> bytes:
        assert self._root_key is not None
        root = self.root_certificate
        now = _now()
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(root.subject)
            .last_update(now - CLOCK_SKEW)
            .next_update(now + CRL_VALIDITY)
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._root_key.public_key()),
                critical=False,
            )
            .sign(self._root_key, hashes.SHA256())
        )
        return crl.public_bytes(serialization.Encoding.DER)


def _check_uscc(uscc: str) -> str:
    if not isinstance(uscc, str) or not _USCC.fullmatch(uscc):
        raise CaError("institution USCC must be 18 characters 0-9A-Z")
    return uscc


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        raise CaError(f"institution name must be 1..{_MAX_NAME} characters")
    return name.strip()
