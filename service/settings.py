"""Service settings: one `Settings` object, read once from `JZ_*` environment variables.

Nested groups use `__` (e.g. `JZ_DATABASE__URL`, `JZ_CHAIN__RPC_URL`). With no
configuration at all the service runs on its embedded defaults: SQLite under
`var/`, a local dev chain started for you, a development CA. Placeholder secrets
are refused outside development.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Well-known development account #1 of the Hardhat/anvil test mnemonic. Public
#: knowledge, so it is refused outside development.
DEV_SERVICE_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
DEV_MASTER_KEY = "jianzheng-development-master-key-not-for-production"
#: Passphrase of the development CA's key files (signer.ca.DEV_PASSPHRASE).
DEV_CA_PASSPHRASE = "jianzheng-dev-ca"

REPO_ROOT = Path(__file__).resolve().parent.parent


class DatabaseSettings(BaseModel):
    #: SQLAlchemy URL; empty means SQLite at `{data_dir}/jianzheng.db`.
    url: str = ""
    pool_size: int = 10
    echo: bool = False


class ChainSettings(BaseModel):
    #: JSON-RPC endpoint; empty means "start the local dev chain under var/chain".
    rpc_url: str = ""
    chain_id: int | None = None
    registry: str = ""
    private_key: SecretStr = SecretStr(DEV_SERVICE_KEY)
    #: Separate keys for the two roles (docs/operations.md): the account that sends
    #: `anchor` (ANCHORER_ROLE) and the one that sends `revoke` (REVOKER_ROLE). Empty:
    #: `private_key` for both. Neither should hold the registry's admin role.
    anchorer_key: SecretStr = SecretStr("")
    revoker_key: SecretStr = SecretStr("")
    #: A transaction not mined within `receipt_timeout_s` is replaced (same nonce) with
    #: its fees raised by this percentage (nodes refuse replacements under +10 %) ...
    fee_bump_percent: int = Field(default=25, ge=10, le=1000)
    #: ... up to this many wei per gas (0: no limit).
    max_fee_per_gas: int = Field(default=0, ge=0)
    #: Blocks to wait after a transaction's own block before a batch counts as anchored
    #: or a revocation as written (0: mined is enough).
    confirmations: int = Field(default=0, ge=0)
    #: Longest wait for an anchor or revoke transaction to be mined and confirmed.
    receipt_timeout_s: float = Field(default=60.0, gt=0)
    #: Port of the dev chain `jianzheng serve` / `jianzheng chain up` starts.
    dev_port: int = 8545

    def anchorer_secret(self) -> str:
        return (self.anchorer_key.get_secret_value() or self.private_key.get_secret_value())

    def revoker_secret(self) -> str:
        return (self.revoker_key.get_secret_value() or self.private_key.get_secret_value())


class AnchorSettings(BaseModel):
    #: A batch closes when it holds this many leaves ...
    batch_max_leaves: int = Field(default=20_000, ge=1, le=1_000_000)
    #: ... or when its oldest leaf has waited this long (seconds).
    batch_max_age_s: float = Field(default=0.5, ge=0)
    poll_interval_s: float = Field(default=0.1, gt=0)
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    #: Run the anchoring worker inside `jianzheng serve`.
    run_in_serve: bool = True


class SecuritySettings(BaseModel):
    #: Key that encrypts API secrets at rest (any string; stretched with HKDF).
    master_key: SecretStr = SecretStr(DEV_MASTER_KEY)
    replay_window_s: int = 300
    max_body_bytes: int = 10 * 1024 * 1024
    max_pdf_bytes: int = 50 * 1024 * 1024


class PublicSettings(BaseModel):
    #: Base of the URL printed in every QR code: `{base_url}/v/{CODE}`.
    base_url: str = "http://127.0.0.1:8000"
    #: Tokens per minute of each client's bucket (burst: a quarter of it); 0 turns the
    #: limit off. Shared by every API process through the database.
    rate_limit_per_minute: int = 120
    #: Reverse proxies (addresses or CIDR networks) whose forwarded header names the
    #: client; from any other peer the header is ignored.
    trusted_proxies: tuple[str, ...] = ()
    #: The header a trusted proxy names the client in (rightmost untrusted hop wins).
    forwarded_header: str = "X-Forwarded-For"
    #: Largest file `POST /api/v1/public/verify` takes; its body limit is this plus the
    #: multipart framing (64 KiB).
    max_verify_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    #: `POST /api/v1/public/verify` checks each file in a child process with at most this
    #: much address space (MiB) ...
    verify_memory_mb: int = Field(default=1024, ge=64)
    #: ... and this much time (seconds); a file beyond either is answered `unreadable`.
    verify_timeout_s: float = Field(default=4.0, gt=0)
    #: Files checked at once per API process; more answer 503 `verify_busy` + Retry-After.
    verify_concurrency: int = Field(default=2, ge=1)
    #: Images with more pixels are refused before they are decoded (public verify, key
    #: images, media uploads of kind `image`).
    max_image_pixels: int = Field(default=40_000_000, ge=1_000_000)


class SigningSettings(BaseModel):
    #: PAdES level: "B-B", "B-T" (default) or "B-LT".
    level: Literal["B-B", "B-T", "B-LT"] = "B-T"
    #: External RFC 3161 TSA; empty means the platform's own development TSA.
    tsa_url: str = ""
    pkcs11_module: str = ""
    pkcs11_token_label: str = ""
    pkcs11_pin: SecretStr = SecretStr("")
    #: Passphrase protecting the platform CA's key files under `{data_dir}/ca`.
    ca_passphrase: SecretStr = SecretStr(DEV_CA_PASSPHRASE)
    #: PEM file of further roots to trust (a licensed CA's root for PKCS#11 seals, an
    #: external TSA's root), besides the platform CA's own; see service/domain/trust.py.
    trust_roots_file: str = ""
    #: Production: allow signing reports with the platform CA's file keys (no PKCS#11).
    allow_platform_ca: bool = False
    #: Production: allow the built-in TSA (the platform CA's TSA key) for time-stamps.
    allow_builtin_tsa: bool = False
    #: Answer `POST /tsa` (the built-in TSA) to anyone; default: only in development.
    serve_tsa: bool | None = None
    #: Co-sign each evidence certificate with the platform's SM2 key beside its PAdES
    #: signature (INTERFACE §7.7; docs/national-crypto.md).
    certificate_sm2: bool = False


class RulesSettings(BaseModel):
    """Upload-deadline rules from the source documents (R11, R13) and their calendar."""

    #: Time zone in which "working days" are counted.
    timezone: str = "Asia/Shanghai"
    #: Weekday numbers (Monday = 0) that are not working days.
    weekend_days: tuple[int, ...] = (5, 6)
    #: Public holidays (not working days), e.g. ["2026-10-01", ...].
    holidays: tuple[date, ...] = ()
    #: Make-up working days (调休) that fall on a weekend.
    extra_workdays: tuple[date, ...] = ()
    #: A contract is due within this many working days of signing (R11).
    contract_upload_working_days: int = Field(default=5, ge=0)
    #: A test plan is due this many working days before on-site testing starts (R11, R26).
    test_plan_lead_working_days: int = Field(default=3, ge=0)
    #: A witness's or sampler's replacement is registered this many working days before it
    #: takes over (R24, Jiujiang §四(三)); later registrations are flagged.
    witness_replacement_notice_working_days: int = Field(default=3, ge=0)
    #: Automatically acquired test data is due this long after the test finished (R10, R13).
    auto_data_max_delay_s: int = Field(default=600, ge=0)
    #: Manually entered test data is due this long after the test finished (R4, R13).
    manual_data_max_delay_s: int = Field(default=86_400, ge=0)
    #: An image's EXIF capture time may differ this much from the declared one (R9).
    media_time_tolerance_s: int = Field(default=300, ge=0)
    #: A sample registered this many days ago that no receipt names is overdue (R13).
    receipt_due_days: float = Field(default=7.0, gt=0)
    #: A received, accepted sample with no test record after this many days is overdue
    #: (R13; 30 days covers the 28-day cure of concrete cubes).
    test_data_due_days: float = Field(default=30.0, gt=0)


class NotifySettings(BaseModel):
    """Notifications for the local supervision agency (R12)."""

    #: Webhook receiving nonconforming-result events; empty keeps them queued.
    webhook_url: str = ""
    #: If set, each delivery carries `X-JZ-Webhook-Signature` (hex HMAC-SHA256 of the body).
    webhook_secret: SecretStr = SecretStr("")
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=12, ge=1)
    retry_initial_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=900.0, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    #: Run the delivery loop inside each API process (rows are claimed, never sent twice).
    run_delivery: bool = True


class UploadSettings(BaseModel):
    """Resumable uploads (INTERFACE §5.2)."""

    #: An open upload that received nothing for this long expires: its bytes are deleted
    #: and further calls on it answer 410 `upload_expired` (start a new upload).
    expire_after_h: float = Field(default=72.0, gt=0)
    #: How often each API process looks for expired uploads (seconds).
    sweep_interval_s: float = Field(default=600.0, gt=0)
    #: A stored file no committed record names is deleted once it is this old (hours): a
    #: crash between storing a file and committing its record leaves such files.
    orphan_grace_h: float = Field(default=24.0, gt=0)
    #: How often each process sweeps for such files (seconds); 0 turns the sweep off.
    orphan_sweep_interval_s: float = Field(default=6 * 3600.0, ge=0)


class ConsoleSettings(BaseModel):
    """The regulators' console under /console/ (docs/console.md)."""

    #: A session unused this long is ended (idle expiry, seconds).
    idle_timeout_s: int = Field(default=1800, ge=60)
    #: A session ends this long after sign-in whatever its use (seconds).
    max_session_s: int = Field(default=12 * 3600, ge=300)
    #: Failed sign-ins of one login name within `signin_window_s` before it is refused...
    signin_max_failures: int = Field(default=5, ge=1)
    #: ...and of one client address (any name): this many times the above.
    signin_ip_factor: int = Field(default=4, ge=1)
    signin_window_s: int = Field(default=900, ge=60)


class EvidenceSettings(BaseModel):
    """The evidence log (INTERFACE §1, §7.7)."""

    #: Hash of leaves and Merkle nodes: "sha256" (§1) or "sm3" (GB/T 32905, §7.7). Pinned
    #: in the database at first start: a deployment keeps one log hash (one kind per
    #: registry), and a service started with the other refuses to run.
    hash: Literal["sha256", "sm3"] = "sha256"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JZ_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    env: Literal["development", "production"] = "development"
    data_dir: Path = REPO_ROOT / "var"
    log_level: str = "INFO"
    database: DatabaseSettings = DatabaseSettings()
    chain: ChainSettings = ChainSettings()
    anchor: AnchorSettings = AnchorSettings()
    security: SecuritySettings = SecuritySettings()
    public: PublicSettings = PublicSettings()
    signing: SigningSettings = SigningSettings()
    rules: RulesSettings = RulesSettings()
    notify: NotifySettings = NotifySettings()
    uploads: UploadSettings = UploadSettings()
    console: ConsoleSettings = ConsoleSettings()


    evidence: EvidenceSettings = EvidenceSettings()

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        problems = unsafe_settings(self)
        if problems:
            raise ValueError(
                f"{len(problems)} unsafe setting(s) for production:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
        return self

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'jianzheng.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def chain_dir(self) -> Path:
        return self.data_dir / "chain"

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"


#: Bytes a production master key must carry (decoded from hex or base64, else as UTF-8).
MIN_MASTER_KEY_BYTES = 32


def _key_bytes(text: str) -> bytes:
    import base64
    import binascii

    stripped = text.strip()
    if len(stripped) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in stripped):
        return bytes.fromhex(stripped)
    try:
        padded = stripped + "=" * (-len(stripped) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return stripped.encode("utf-8")


def _loopback_or_plain(url: str) -> str | None:
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "https":
        return "must be https:// (it is printed in every QR code and signed PDF)"
    host = (parts.hostname or "").lower()
    if host in ("", "localhost") or host.endswith(".localhost"):
        return "must name the platform's public host, not localhost"
    try:
        if ip_address(host).is_loopback or ip_address(host).is_unspecified:
            return "must name the platform's public host, not a loopback address"
    except ValueError:
        pass
    return None


def unsafe_settings(settings: Settings) -> list[str]:
    """Every setting production refuses, each named by its variable (empty in development).

    Pure: reads only the settings (files they point at are checked at start-up,
    service.state.check_startup)."""
    if settings.env == "development":
        return []
    problems = []
    master = settings.security.master_key.get_secret_value()
    if master == DEV_MASTER_KEY:
        problems.append("JZ_SECURITY__MASTER_KEY: the development placeholder; set a secret")
    elif len(set(master)) < 8 or len(_key_bytes(master)) < MIN_MASTER_KEY_BYTES:
        problems.append(
            f"JZ_SECURITY__MASTER_KEY: shorter than {MIN_MASTER_KEY_BYTES} random bytes "
            "(e.g. `openssl rand -hex 32`)"
        )
    if settings.chain.private_key.get_secret_value() == DEV_SERVICE_KEY:
        problems.append("JZ_CHAIN__PRIVATE_KEY: a well-known development account")
    if settings.signing.ca_passphrase.get_secret_value() == DEV_CA_PASSPHRASE:
        problems.append("JZ_SIGNING__CA_PASSPHRASE: the development placeholder")
    if not settings.chain.rpc_url:
        problems.append("JZ_CHAIN__RPC_URL: required (the dev chain is for development)")
    if not settings.chain.registry:
        problems.append("JZ_CHAIN__REGISTRY: required")
    why = _loopback_or_plain(settings.public.base_url)
    if why:
        problems.append(f"JZ_PUBLIC__BASE_URL: {why}")
    signing = settings.signing
    if not signing.pkcs11_module and not signing.allow_platform_ca:
        problems.append(
            "JZ_SIGNING__PKCS11_MODULE: reports would be signed with the platform CA's file "
            "keys; use an HSM/licensed CA, or set JZ_SIGNING__ALLOW_PLATFORM_CA=true"
        )
    if signing.level != "B-B" and not signing.tsa_url and not signing.allow_builtin_tsa:
        problems.append(
            "JZ_SIGNING__TSA_URL: time-stamps would come from the built-in TSA; name a "
            "licensed TSA, or set JZ_SIGNING__ALLOW_BUILTIN_TSA=true"
        )
    if signing.serve_tsa:
        problems.append("JZ_SIGNING__SERVE_TSA: POST /tsa would time-stamp for anyone")
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
