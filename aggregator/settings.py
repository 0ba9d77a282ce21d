"""Configuration of the aggregator role, read from ``PCF_AGG_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PLACEHOLDER_SECRETS", "AggregatorSettings"]

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "changethis", "secret", "password", "admin", "token", "test", "xxx"}
)
"""Values refused for a secret outside ``environment == "development"`` (compared case-insensitively)."""

_MIN_SECRET_LENGTH = 16


class AggregatorSettings(BaseSettings):
    """Settings of one aggregator deployment.

    Secrets (``admin_token``, ``pact_client_secret``) have no default; outside development a
    placeholder value or a token shorter than 16 characters is refused at start-up.
    """

    model_config = SettingsConfigDict(env_prefix="PCF_AGG_", extra="ignore")

    environment: Literal["development", "staging", "production"] = "production"
    home: Path = Field(default_factory=lambda: Path("~/.pcf/aggregator").expanduser())
    """Directory for the default SQLite database and identity key (``PCF_AGG_HOME``)."""
    db_url: str | None = None
    """``sqlite:///path`` or ``postgresql://...``; default ``sqlite:///<home>/aggregator.db``."""
    admin_token: SecretStr
    """Bearer token of the association's administrators."""
    identity_key_path: Path | None = None
    """Ed25519 identity key of the aggregator; default ``<home>/identity.key`` (created if absent)."""
    paillier_public_key_path: Path | None = None
    """``paillier_public_key.json`` from the custodians' key ceremony; needed for ``paillier`` rounds."""
    pact_client_id: str = "pcf-aggregator"
    pact_client_secret: SecretStr
    """Client secret of the PACT v3 OAuth2 client-credentials flow."""
    public_base_url: str = "http://127.0.0.1:8080"
    national_db_push_url: str | None = None
    """Where ``pcf agg publish`` delivers factor packages when no ``--to`` is given (read by the CLI)."""
    superlink_address: str | None = None
    superlink_root_certificates: Path | None = None
    superlink_certificate: Path | None = None
    superlink_private_key: Path | None = None
    request_max_age_seconds: int = Field(default=300, gt=0)
    """Signed member requests older (or further in the future) than this are refused."""

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> AggregatorSettings:
        if self.environment == "development":
            return self
        for name in ("admin_token", "pact_client_secret"):
            value: SecretStr = getattr(self, name)
            raw = value.get_secret_value()
            if raw.strip().lower() in PLACEHOLDER_SECRETS or len(raw) < _MIN_SECRET_LENGTH:
                raise ValueError(
                    f"PCF_AGG_{name.upper()} is a placeholder or shorter than {_MIN_SECRET_LENGTH} characters; "
                    f"set a random value (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) "
                    f"or PCF_AGG_ENVIRONMENT=development"
                )
        return self

    @property
    def database_url(self) -> str:
        """The configured database URL, or the SQLite file under ``home``."""
        return self.db_url or f"sqlite:///{self.home / 'aggregator.db'}"

    @property
    def identity_key_file(self) -> Path:
        """The configured identity key path, or ``<home>/identity.key``."""
        return self.identity_key_path or self.home / "identity.key"
