"""The platform's QR-payload signing keys and their signed trust list (INTERFACE §7.5).

Layout under the CA directory::

    qr/trust-list.json      the signed jianzheng-trust/1 document (the source of truth)
    qr/keys/<kid>.key.pem   a signing key, PKCS#8 encrypted with the CA passphrase
    qr/keys/<kid>.sm2.key   an SM2 signing key (§7.7), sealed with the CA passphrase
    qr/keys/<kid>.pem       its certificate (issued by the platform root, EKU QR signing)

A key is ES256 (alg -7) or SM2 (alg -70001, SM2 with SM3 and the default distinguishing
ID; `rotate(algorithm="SM2")`, signer/sm2qr.py); the trust list names each key's alg and
the payloads the active key signs carry it.

The signing key is the last key of the list. ``rotate`` makes a new key and ends the old
key's window ``ROTATION_GRACE_S`` seconds later (a payload the old key signed before that
stays valid for ever); ``remove`` drops a key from the list, so what it signed no longer
verifies (a compromised key). Each change re-signs the list with the root key, the way the
root signs its CRL. Processes notice a changed list by its file stamp and reload it.

Production keeps the QR key in a PKCS#11 token beside the seal keys and signs the list
with the platform CA there; the file keys are the development path.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from verifier import sm2
from verifier.qr import (
    ALG_ES256,
    ALG_SM2,
    TRUST_LIST_FORMAT,
    QrFacts,
    encode_sign1,
    kid_of_certificate,
    parse_trust_list,
    protected_header,
    root_fingerprint,
    sig_structure,
    trust_list_signed_bytes,
)

from .ca import DevCA, _atomic_write
from .errors import CaError

#: How long an old key still signs after a rotation (processes reload within a request).
ROTATION_GRACE_S = 300


def _raw_signature(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(frozen=True)
class QrSigningKey:
    kid: bytes
    private_key: ec.EllipticCurvePrivateKey | sm2.SM2PrivateKey
    certificate_der: bytes
    not_before: int
    not_after: int
    protected: bytes

    def sign(self, facts: QrFacts) -> bytes:
        """The COSE_Sign1 message (tag 18) over ``facts``."""
        payload = cbor2.dumps(facts.to_cbor_map(), canonical=True)
        tbs = sig_structure(self.protected, payload)
        if isinstance(self.private_key, sm2.SM2PrivateKey):
            return encode_sign1(self.protected, payload, self.private_key.sign_raw(tbs))
        der = self.private_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        return encode_sign1(self.protected, payload, _raw_signature(der))


#: How far back the first QR key's window opens (see `_create_first`).
FIRST_KEY_BACKDATE_S = 60


class QrKeyStore:
    """The QR keys of one CA directory (thread-safe; reloads when another process rotates)."""

    def __init__(self, ca: DevCA) -> None:
        self.ca = ca
        self.directory = ca.directory / "qr"
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._list_bytes = b""
        self._active: QrSigningKey | None = None

    @property
    def list_path(self) -> Path:
        return self.directory / "trust-list.json"

    def _key_path(self, kid: str) -> Path:
        return self.directory / "keys" / f"{kid}.key.pem"

    def _sm2_key_path(self, kid: str) -> Path:
        return self.directory / "keys" / f"{kid}.sm2.key"

    def _cert_path(self, kid: str) -> Path:
        return self.directory / "keys" / f"{kid}.pem"

    # -- reading --------------------------------------------------------------------------
    def trust_list_bytes(self) -> bytes:
        """The signed trust list as served at ``GET /ca/trust-list.json``."""
        self._refresh()
        return self._list_bytes

    def document(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.trust_list_bytes())
        return data

    def active(self) -> QrSigningKey:
        """The key that signs new payloads."""
        self._refresh()
        assert self._active is not None
        return self._active

    def sign(self, facts: QrFacts) -> tuple[bytes, bytes]:
        """(COSE_Sign1 bytes, kid) over ``facts`` with the active key."""
        key = self.active()
        if not key.not_before <= facts.sealed_at <= key.not_after:
            raise CaError("the QR signing key is outside its window; rotate it")
        return key.sign(facts), key.kid

    def _refresh(self) -> None:
        try:
            st = os.stat(self.list_path)
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return
        with self._lock:
            if stamp is None:
                self._create_first()
                st = os.stat(self.list_path)
                stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
            if stamp == self._stamp:
                return
            data = self.list_path.read_bytes()
            trust = parse_trust_list(data)
            if not trust.keys:
                raise CaError("the QR trust list has no key")
            last = trust.keys[-1]
            key: ec.EllipticCurvePrivateKey | sm2.SM2PrivateKey
            try:
                if last.alg == "SM2":
                    sealed = self._sm2_key_path(last.kid).read_bytes()
                    key = sm2.SM2PrivateKey.from_scalar(self.ca.open_secret(sealed))
                else:
                    key = self.ca.load_private_key_pem(self._key_path(last.kid).read_bytes())
            except FileNotFoundError:
                raise CaError(f"the QR signing key {last.kid} is missing") from None
            alg = ALG_SM2 if last.alg == "SM2" else ALG_ES256
            self._active = QrSigningKey(
                bytes.fromhex(last.kid), key, last.certificate, last.not_before,
                last.not_after, protected_header(alg, bytes.fromhex(last.kid)),
            )
            self._list_bytes, self._stamp = data, stamp

    # -- changing -------------------------------------------------------------------------
    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _create_first(self) -> None:
        with self._file_lock():
            if not self.list_path.exists():
                now = int(time.time())
                # The first key's window opens a minute back: the payload that made us
                # create it was stamped with its sealing time before the key existed, and
                # the second may have ticked since (its certificate is valid from then too).
                entry = self._new_key(now - FIRST_KEY_BACKDATE_S)
                self._write([entry], now)

    def _new_key(self, now: int, algorithm: str = "ES256") -> dict[str, Any]:
        """A new key of `algorithm` (ES256 or SM2), its files written; its list entry."""
        label = time.strftime("%Y-%m-%d")
        if algorithm == "SM2":
            from .sm2qr import issue_sm2_certificate

            sm2_key = sm2.SM2PrivateKey.generate()
            der = issue_sm2_certificate(self.ca, sm2_key.point, label)
            key_path, key_file = self._sm2_key_path, self.ca.seal_secret(sm2_key.scalar)
        elif algorithm == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
            issued = self.ca.issue_qr_certificate(key.public_key(), label)
            der = issued.public_bytes(serialization.Encoding.DER)
            key_path, key_file = self._key_path, self.ca.private_key_pem(key)
        else:
            raise CaError(f"unknown QR signing algorithm {algorithm!r} (ES256 or SM2)")
        cert = x509.load_der_x509_certificate(der)
        kid = kid_of_certificate(der).hex()
        _atomic_write(key_path(kid), key_file, private=True)
        _atomic_write(
            self._cert_path(kid), cert.public_bytes(serialization.Encoding.PEM), private=False
        )
        return {
            "kid": kid,
            "alg": algorithm,
            "certificate": base64.b64encode(der).decode("ascii"),
            "not_before": max(now, int(cert.not_valid_before_utc.timestamp())),
            "not_after": int(cert.not_valid_after_utc.timestamp()),
        }

    def _write(self, keys: list[dict[str, Any]], now: int) -> None:
        root_der = self.ca.root_certificate.public_bytes(serialization.Encoding.DER)
        doc: dict[str, Any] = {
            "format": TRUST_LIST_FORMAT,
            "issued_at": now,
            "issuer": self.ca.root_certificate.subject.rfc4514_string(),
            "keys": keys,
        }
        signature = _raw_signature(self.ca.root_sign(trust_list_signed_bytes(doc)))
        doc["signature"] = {
            "alg": "ES256",
            "root_id": root_fingerprint(root_der),
            "value": base64.b64encode(signature).decode("ascii"),
        }
        if any(k.get("alg") == "SM2" for k in keys):
            # a deployment that signs with SM2 co-signs its list with SM2 too (§7.7)
            from .sm2qr import platform_sm2_key

            sm2_key, sm2_cert = platform_sm2_key(self.ca)
            doc["signature_sm2"] = {
                "alg": "SM2",
                "certificate": base64.b64encode(sm2_cert).decode("ascii"),
                "value": base64.b64encode(
                    sm2_key.sign_raw(trust_list_signed_bytes(doc))
                ).decode("ascii"),
            }
        data = (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
        _atomic_write(self.list_path, data, private=False)

    def _current_keys(self) -> list[dict[str, Any]]:
        if not self.list_path.exists():
            return []
        keys: list[dict[str, Any]] = json.loads(self.list_path.read_bytes())["keys"]
        return keys

    def rotate(
        self, *, grace_s: int = ROTATION_GRACE_S, now: int | None = None, algorithm: str = "ES256"
    ) -> str:
        """A new signing key (`algorithm` ES256 or SM2); the old one's window ends
        ``grace_s`` from now. Its kid."""
        self._refresh()
        with self._file_lock():
            when = int(time.time()) if now is None else now
            keys = self._current_keys()
            for entry in keys:
                entry["not_after"] = min(entry["not_after"], when + grace_s)
            fresh = self._new_key(when, algorithm)
            keys.append(fresh)
            self._write(keys, when)
        self._refresh()
        return str(fresh["kid"])

    def remove(self, kid: str, *, now: int | None = None) -> None:
        """Drop a key from the list: payloads it signed no longer verify."""
        self._refresh()
        with self._file_lock():
            keys = self._current_keys()
            if not any(k["kid"] == kid for k in keys):
                raise CaError(f"no QR key {kid} in the trust list")
            if keys[-1]["kid"] == kid:
                raise CaError("the signing key cannot be removed; rotate first")
            keys = [k for k in keys if k["kid"] != kid]
            self._write(keys, int(time.time()) if now is None else now)
            self._key_path(kid).unlink(missing_ok=True)
            self._sm2_key_path(kid).unlink(missing_ok=True)
        self._refresh()

    def keys(self) -> list[dict[str, Any]]:
        """The list's keys, the signing one last (for `jianzheng ca qr-keys`)."""
        out = []
        for entry in self.document()["keys"]:
            cert = x509.load_der_x509_certificate(base64.b64decode(entry["certificate"]))
            out.append(
                {k: entry[k] for k in ("kid", "alg", "not_before", "not_after")}
                | {"subject": cert.subject.rfc4514_string()}
            )
        return out


# -- the URL in the QR code ---------------------------------------------------------------

#: The largest QR the stamp prints for a signed payload (issue 15: version <= 15, EC Q).
MAX_QR_VERSION = 15
QR_ERROR_LEVEL = "q"
#: Characters a version-15 QR at level Q holds: alphanumeric mode / byte mode (UTF-8).
MAX_ALNUM_CHARS_V15_Q = 426
MAX_BYTES_V15_Q = 292
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def signed_qr_url(base_url: str, code: str, cose: bytes) -> str | None:
    """``{BASE}/V/{CODE}/JZ1…`` in upper case when the base URL allows it (QR alphanumeric
    mode: scheme and host are case-insensitive, a path is kept only if it is upper case
    already), else ``{base}/v/{CODE}/JZ1…``; None when it does not fit a version-15 QR at
    level Q (then the report gets the plain ``/v/{CODE}`` QR)."""
    from urllib.parse import urlsplit

    from verifier.qr import payload_text

    base = base_url.rstrip("/")
    parts = urlsplit(base)
    p = payload_text(cose)
    upper = f"{parts.scheme}://{parts.netloc}".upper() + parts.path
    if parts.path == parts.path.upper() and set(upper) <= _ALNUM:
        url = f"{upper}/V/{code}/{p}"
        return url if len(url) <= MAX_ALNUM_CHARS_V15_Q else None
    url = f"{base}/v/{code}/{p}"
    return url if len(url.encode("utf-8")) <= MAX_BYTES_V15_Q else None
