"""Production trust: a licensed CA's root (signing.trust_roots_file) is trusted besides
the platform CA's, published with it, and checked at start; the dev CA passphrase is
refused outside development."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.domain.public import SignatureChecker
from service.errors import IntegrityFault
from service.settings import Settings
from service.state import build_state, check_startup
from signer.ca import DevCA
from signer.errors import CaError
from signer.seal import seal_pdf
from signer.stamp import make_dev_seal_image, prepare_seal
from tests.fixtures.db import make_settings
from tests.fixtures.signer import INSTITUTION_NAME, INSTITUTION_USCC, TEST_CODE, make_report_pdf

PRODUCTION = {
    "env": "production",
    "security": {"master_key": "9f" + "0123456789abcdef" * 4 + "e1"},
    "chain": {
        "rpc_url": "http://127.0.0.1:8545",
        "registry": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "private_key": "0x" + "11" * 32,
    },
    "public": {"base_url": "https://jz.zjj.sz.gov.cn"},
}
PRODUCTION_SIGNING = {"allow_platform_ca": True, "allow_builtin_tsa": True}


def _licensed_ca_sealed_pdf(ca_dir: Path) -> tuple[DevCA, bytes]:
    """A report sealed by another CA (standing in for a licensed one), B-B."""
    licensed = DevCA(ca_dir)
    sealed = seal_pdf(
        make_report_pdf(1),
        TEST_CODE,
        f"https://jz.example/v/{TEST_CODE}",
        prepare_seal(INSTITUTION_NAME, make_dev_seal_image(INSTITUTION_NAME)),
        licensed.seal_key_source(INSTITUTION_USCC, INSTITUTION_NAME),
        None,
        "B-B",
    )
    return licensed, sealed.data


def test_extra_roots_are_trusted_and_published(tmp_path: Path) -> None:
    licensed, pdf = _licensed_ca_sealed_pdf(tmp_path / "licensed-ca")
    roots_file = tmp_path / "roots.pem"
    roots_file.write_bytes(licensed.roots_pem())
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"

    plain = build_state(make_settings(tmp_path / "a", url, signing={"level": "B-B"}), chain=None)
    trusted = build_state(
        make_settings(
            tmp_path / "b",
            url,
            signing={"level": "B-B", "trust_roots_file": str(roots_file)},
        ),
        chain=None,
    )
    try:
        # the public page's check: untrusted with the platform root alone, trusted with both
        assert SignatureChecker(plain.settings).verify(pdf, check_qr=False).trusted is False
        assert SignatureChecker(trusted.settings).verify(pdf, check_qr=False).trusted is True
        assert len(SignatureChecker(trusted.settings).roots()) == 2

        with TestClient(create_app(trusted.settings, state=trusted)) as http:
            published = http.get("/ca/roots.pem")
        assert published.status_code == 200
        own = DevCA(trusted.settings.ca_dir).roots_pem()
        assert published.content == own + licensed.roots_pem()
    finally:
        plain.engine.dispose()
        trusted.engine.dispose()


def test_unusable_roots_file_fails_at_start(tmp_path: Path) -> None:
    """Checked at start-up (service.state.check_startup, run by build_state), not parsing."""
    with pytest.raises(IntegrityFault, match="cannot be read"):
        check_startup(
            Settings.model_validate({"signing": {"trust_roots_file": str(tmp_path / "none.pem")}})
        )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(IntegrityFault, match="trust_roots_file"):
        build_state(
            make_settings(tmp_path, f"sqlite:///{tmp_path / 'x.db'}",
                          signing={"trust_roots_file": str(garbage)}),
            chain=None,
        )


def test_production_refuses_the_dev_ca_passphrase() -> None:
    with pytest.raises(ValidationError, match="JZ_SIGNING__CA_PASSPHRASE"):
        Settings.model_validate(PRODUCTION)
    ok = Settings.model_validate(
        {**PRODUCTION, "signing": {"ca_passphrase": "s3cret-pass", **PRODUCTION_SIGNING}}
    )
    assert ok.signing.ca_passphrase.get_secret_value() == "s3cret-pass"


def test_ca_passphrase_setting_protects_the_ca_keys(tmp_path: Path) -> None:
    """The platform CA made with a configured passphrase opens only with it."""
    from service.domain.trust import platform_ca

    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'x.db'}", signing={"ca_passphrase": "pass-one"}
    )
    ca = platform_ca(settings)
    ca.seal_key_source(INSTITUTION_USCC, INSTITUTION_NAME)
    with pytest.raises(CaError):
        DevCA(settings.ca_dir).seal_key_source(INSTITUTION_USCC, INSTITUTION_NAME)
