"""PKCS#11: a seal key generated inside SoftHSM (it never leaves the token) signs the same
report; the result validates exactly like the PKCS#12-signed one."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signer.errors import KeySourceError
from signer.keys import PKCS11KeySource, load_certificates
from signer.seal import SealedPdf, seal_pdf
from tests.fixtures.signer import INSTITUTION_NAME, INSTITUTION_USCC, SignerEnv, pdfsig
from verifier.pdf import verify_sealed_pdf

SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "jz-seal"
PIN = "1234"
SO_PIN = "5678"

#: What these tests need; CI installs it (scripts/bootstrap.sh test: softhsm2, opensc).
MISSING = [
    what
    for what, present in (
        (SOFTHSM_LIB, Path(SOFTHSM_LIB).exists()),
        ("softhsm2-util", shutil.which("softhsm2-util") is not None),
        ("pkcs11-tool", shutil.which("pkcs11-tool") is not None),
    )
    if not present
]
#: Only an explicit opt-out turns a missing SoftHSM into skips; otherwise the run fails, so
#: a machine without it cannot look green while the PKCS#11 path goes untested.
ALLOW_NO_SOFTHSM = os.environ.get("JZ_TEST_ALLOW_NO_SOFTHSM") == "1"

pytestmark = pytest.mark.skipif(
    bool(MISSING) and ALLOW_NO_SOFTHSM,
    reason=f"JZ_TEST_ALLOW_NO_SOFTHSM=1 and missing: {', '.join(MISSING)}",
)


@pytest.fixture(scope="module", autouse=True)
def _softhsm_installed() -> None:
    if MISSING:
        pytest.fail(
            f"SoftHSM/OpenSC missing ({', '.join(MISSING)}): install softhsm2 and opensc "
            "(scripts/bootstrap.sh test), or set JZ_TEST_ALLOW_NO_SOFTHSM=1 to skip these tests",
            pytrace=False,
        )


@dataclass
class Token:
    lib: str
    label: str
    pin: str


def _tool(*args: str) -> bytes:
    return subprocess.run(
        ["pkcs11-tool", "--module", SOFTHSM_LIB, "--token-label", TOKEN, "--login",
         "--pin", PIN, *args],
        check=True, capture_output=True, timeout=60,
    ).stdout


@pytest.fixture(scope="module")
def softhsm_token(
    tmp_path_factory: pytest.TempPathFactory, signer_env: SignerEnv
) -> Iterator[Token]:
    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("SOFTHSM2_CONF", str(conf))
    try:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", TOKEN,
             "--pin", PIN, "--so-pin", SO_PIN],
            check=True, capture_output=True, timeout=60,
        )
        _tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "seal", "--id", "01")
        pub_der = d / "pub.der"
        _tool("--read-object", "--type", "pubkey", "--id", "01", "-o", str(pub_der))
        public_key = serialization.load_der_public_key(pub_der.read_bytes())
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        cert = signer_env.ca.issue_seal_certificate(INSTITUTION_USCC, INSTITUTION_NAME, public_key)
        cert_der = d / "cert.der"
        cert_der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        _tool("--write-object", str(cert_der), "--type", "cert", "--label", "seal", "--id", "01")
        yield Token(SOFTHSM_LIB, TOKEN, PIN)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def hsm_key(softhsm_token: Token, signer_env: SignerEnv) -> Iterator[PKCS11KeySource]:
    ks = PKCS11KeySource(
        softhsm_token.lib,
        token_label=softhsm_token.label,
        user_pin=softhsm_token.pin,
        key_label="seal",
        extra_certs=load_certificates(signer_env.roots_pem),
    )
    yield ks
    ks.close()


def test_same_report_signed_in_softhsm_validates_identically(
    hsm_key: PKCS11KeySource,
    signer_env: SignerEnv,
    report_3p: bytes,
    sealed_3p: SealedPdf,
    nss_db: str,
    tmp_path: Path,
) -> None:
    assert hsm_key.signer.use_raw_mechanism  # EC on SoftHSM 2.6: CKM_ECDSA on the digest
    sealed = seal_pdf(
        report_3p, signer_env.code, signer_env.verify_url, signer_env.seal, hsm_key,
        signer_env.tsa.timestamper(),
    )
    assert sealed.data.startswith(report_3p)
    assert sealed.original_sha256 == sealed_3p.original_sha256
    hsm_res = verify_sealed_pdf(sealed.data, [signer_env.roots_pem], signer_env.code)
    file_res = verify_sealed_pdf(sealed_3p.data, [signer_env.roots_pem], signer_env.code)
    assert hsm_res.bottom_line, hsm_res.findings

    def comparable(r):  # type: ignore[no-untyped-def]
        return {
            k: v for k, v in vars(r).items() if k not in ("sha256", "timestamp", "signer_subject")
        }

    assert comparable(hsm_res) == comparable(file_res)
    # the same institution identity, from a different key
    assert hsm_res.signer_subject == file_res.signer_subject
    hsm_cert = x509.load_der_x509_certificate(hsm_key.certificate.dump())
    file_cert = x509.load_der_x509_certificate(signer_env.seal_key.certificate.dump())
    assert hsm_cert.public_key() != file_cert.public_key()
    out = pdfsig(sealed.data, nss_db, tmp_path)
    assert "Signature is Valid." in out and "Certificate is Trusted." in out
    assert "Total document signed" in out


def test_wrong_pin_is_a_clean_error_without_the_pin(softhsm_token: Token) -> None:
    ks = PKCS11KeySource(
        softhsm_token.lib, token_label=softhsm_token.label, user_pin="999999", key_label="seal"
    )
    with pytest.raises(KeySourceError) as err:
        _ = ks.signer
    assert "999999" not in str(err.value) and "999999" not in repr(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__

