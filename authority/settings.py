"""Configuration of the membership authority, read from ``PCF_AUTHORITY_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AuthoritySettings"]


class AuthoritySettings(BaseSettings):
    """Settings of one membership authority (hosted by the national database)."""

    model_config = SettingsConfigDict(env_prefix="PCF_AUTHORITY_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".pcf" / "authority")
    """Directory of the signing key and the default SQLite register (``PCF_AUTHORITY_HOME``)."""
    db_url: str | None = None
    """``sqlite:///path`` or ``postgresql://...``; default ``sqlite:///<home>/authority.db``."""
    db_auto_upgrade: bool = True
    """Upgrade a PostgreSQL register's schema on opening (``PCF_AUTHORITY_DB_AUTO_UPGRADE``)."""
    key_path: Path | None = None
    """The authority's Ed25519 signing key; default ``<home>/authority.pem``."""
    certificate_days: int = Field(default=365, ge=1, le=3650)
    """How long a certificate is valid (``PCF_AUTHORITY_CERTIFICATE_DAYS``)."""
    revocation_list_days: int = Field(default=7, ge=1, le=90)
    """When a revocation list says the next is due (``PCF_AUTHORITY_REVOCATION_LIST_DAYS``)."""

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'authority.db'}"

    @property
    def key_file(self) -> Path:
        return self.key_path or self.home / "authority.pem"
