"""SM2 signatures with SM3 (GB/T 32918.2, GM/T 0009), INTERFACE §7.7.

The signature of a message M by a key with public point P and distinguishing ID `ID` is the
SM2 signature of e = SM3(Z || M), Z = SM3(ENTL || ID || a || b || xG || yG || xP || yP);
the ID is ``1234567812345678`` (GM/T 0009's default) unless a key says otherwise. This is
what ``openssl pkeyutl -sign -rawin -digest sm3 -pkeyopt distid:…`` computes.

Encodings, as OpenSSL 3 writes them:

- public key: a SubjectPublicKeyInfo (id-ecPublicKey, curve sm2 1.2.156.10197.1.301, the
  uncompressed point), or the bare 65-byte point ``04 || x || y``;
- private key: PKCS#8 (the same algorithm identifier around an RFC 5915 ECPrivateKey);
- signature: DER ``SEQUENCE { r, s }``, or raw ``r || s`` (64 bytes, as in COSE).

The arithmetic is the third-party ``gmalg`` package (pure Python, maintained, written to
GB/T 32918; see docs/national-crypto.md for why this one). Verification never raises.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

import gmalg
from asn1crypto import algos, keys

#: GM/T 0009-2012 §10's default distinguishing ID.
DEFAULT_ID = b"1234567812345678"
#: OID of the SM2 curve (GM/T 0006).
SM2_CURVE_OID = "1.2.156.10197.1.301"
#: DER of the SubjectPublicKeyInfo of an SM2 key up to its point: SEQUENCE, AlgorithmIdentifier
#: (id-ecPublicKey, sm2), BIT STRING of 66 bytes (no unused bits, then the 65-byte point).
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004")
#: Order n of the SM2 base point (GB/T 32918.5).
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
#: Longest distinguishing ID accepted (ENTL is 16 bits of bit length).
MAX_ID_BYTES = 8191

if SM2_CURVE_OID not in keys.NamedCurve._map:  # asn1crypto's documented way to add a curve
    keys.NamedCurve.register("sm2", SM2_CURVE_OID, 32)


class SM2KeyError(ValueError):
    """Bytes that are not an SM2 key of the accepted encodings."""


def _point(data: bytes) -> bytes:
    if len(data) != 65 or data[0] != 4:
        raise SM2KeyError("an SM2 public key is the 65-byte uncompressed point 04 || x || y")
    try:
        ok = gmalg.SM2(pk=data, uid=DEFAULT_ID).verify_pk(data)
    except (ValueError, ArithmeticError, TypeError) as exc:
        raise SM2KeyError("not a point of the SM2 curve") from exc
    if not ok:
        raise SM2KeyError("not a point of the SM2 curve")
    return data


def public_point(public_key: bytes) -> bytes:
    """The 65-byte point of an SM2 public key given as SPKI DER or as the bare point."""
    if len(public_key) == len(SPKI_PREFIX) + 64 and public_key.startswith(SPKI_PREFIX):
        return _point(public_key[len(SPKI_PREFIX) - 1 :])
    if len(public_key) == 65:
        return _point(public_key)
    raise SM2KeyError("not an SM2 SubjectPublicKeyInfo (id-ecPublicKey, curve sm2) nor a point")


def spki_der(point: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER of an SM2 public point (as OpenSSL writes it)."""
    return SPKI_PREFIX + _point(point)[1:]


def spki_pem(point: bytes) -> str:
    import base64

    b64 = base64.b64encode(spki_der(point)).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def _int32(value: int) -> bytes:
    return value.to_bytes(32, "big")


def raw_signature(sig: bytes) -> tuple[int, int] | None:
    """(r, s) of a DER or raw r||s signature; None when it is neither."""
    if len(sig) == 64:
        return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    try:
        parsed = algos.DSASignature.load(sig, strict=True)
        r, s = parsed["r"].native, parsed["s"].native
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(r, int) or not isinstance(s, int):
        return None
    return r, s


def der_signature(r: int, s: int) -> bytes:
    """DER ``SEQUENCE { r, s }`` (what OpenSSL's pkeyutl writes and reads)."""
    out: bytes = algos.DSASignature({"r": r, "s": s}).dump()
    return out


def verify(public_key: bytes, message: bytes, sig: bytes, distid: bytes = DEFAULT_ID) -> bool:
    """True when `sig` (DER or raw r||s) is an SM2-with-SM3 signature of `message` by the key
    (SPKI DER or bare point) under the distinguishing ID `distid`; never raises."""
    if not 0 < len(distid) <= MAX_ID_BYTES:
        return False
    try:
        point = public_point(public_key)
    except SM2KeyError:
        return False
    rs = raw_signature(sig)
    if rs is None:
        return False
    r, s = rs
    if not (1 <= r < N and 1 <= s < N):
        return False
    try:
        return bool(gmalg.SM2(pk=point, uid=distid).verify(message, _int32(r), _int32(s)))
    except (ValueError, ArithmeticError, TypeError):
        return False


@dataclass(frozen=True)
class SM2PrivateKey:
    """An SM2 private key: the scalar and its public point."""

    scalar: bytes  # 32 bytes
    point: bytes  # 65 bytes, 04 || x || y

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        sk, pk = gmalg.SM2().generate_keypair()
        return cls(sk, pk)

    @classmethod
    def from_scalar(cls, scalar: bytes) -> SM2PrivateKey:
        if len(scalar) != 32 or not 1 <= int.from_bytes(scalar, "big") < N - 1:
            raise SM2KeyError("an SM2 private key is a 32-byte scalar in [1, n-2]")
        return cls(scalar, gmalg.SM2().generate_pk(scalar))

    @classmethod
    def from_pkcs8(cls, der_or_pem: bytes) -> SM2PrivateKey:
        """An SM2 key from PKCS#8 (DER or PEM, unencrypted), e.g. ``openssl genpkey
        -algorithm SM2``."""
        data = der_or_pem
        if data.lstrip().startswith(b"-----BEGIN"):
            import base64

            body = b"".join(
                line for line in data.strip().splitlines() if not line.startswith(b"-----")
            )
            try:
                data = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise SM2KeyError("PEM body is not base64") from exc
        try:
            info = keys.PrivateKeyInfo.load(data, strict=True)
            algo = info["private_key_algorithm"]
            curve = algo["parameters"].chosen.dotted if algo["parameters"].name == "named" else ""
            if algo["algorithm"].dotted != "1.2.840.10045.2.1" or curve != SM2_CURVE_OID:
                raise SM2KeyError("not an SM2 key (id-ecPublicKey on curve sm2)")
            scalar = int(info["private_key"].parsed["private_key"].native)
        except (ValueError, TypeError, KeyError) as exc:
            raise SM2KeyError(f"not a PKCS#8 SM2 private key: {exc}") from exc
        return cls.from_scalar(_int32(scalar))

    def pkcs8_der(self) -> bytes:
        """PKCS#8 DER of the key, readable by ``openssl pkey``."""
        curve = keys.ECDomainParameters(name="named", value=SM2_CURVE_OID)
        ec_key = keys.ECPrivateKey(
            {
                "version": "ecPrivkeyVer1",
                "private_key": int.from_bytes(self.scalar, "big"),
                "public_key": self.point,
            }
        )
        info = keys.PrivateKeyInfo(
            {
                "version": 0,
                "private_key_algorithm": keys.PrivateKeyAlgorithm(
                    {"algorithm": "ec", "parameters": curve}
                ),
                "private_key": ec_key,
            }
        )
        out: bytes = info.dump()
        return out

    def public_der(self) -> bytes:
        return spki_der(self.point)

    def sign_raw(self, message: bytes, distid: bytes = DEFAULT_ID) -> bytes:
        """The signature of `message` as raw r||s (64 bytes; COSE, §7.7)."""
        r, s = gmalg.SM2(sk=self.scalar, pk=self.point, uid=distid).sign(message)
        raw: bytes = bytes(r).rjust(32, b"\0") + bytes(s).rjust(32, b"\0")
        return raw

    def sign_der(self, message: bytes, distid: bytes = DEFAULT_ID) -> bytes:
        """The signature of `message` as DER (what ``openssl pkeyutl -verify`` reads)."""
        raw = self.sign_raw(message, distid)
        return der_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
