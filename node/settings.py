"""Configuration of the node role, read from ``PCF_NODE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["NodeSettings"]


class NodeSettings(BaseSettings):
    """Settings of one enterprise node.

    ``PCF_HOME`` and ``PCF_DB``, the names release 0.1 read, are still accepted when the
    ``PCF_NODE_*`` name is not set.
    """

    model_config = SettingsConfigDict(env_prefix="PCF_NODE_", extra="ignore", populate_by_name=True)

    home: Path = Field(
        default_factory=lambda: Path.home() / ".pcf" / "node",
        validation_alias=AliasChoices("PCF_NODE_HOME", "PCF_HOME"),
    )
    """Directory of the identity key, the SuperNode keys and the default SQLite database
    (``PCF_NODE_HOME``, or ``PCF_HOME``)."""
    db_url: str | None = Field(default=None, validation_alias=AliasChoices("PCF_NODE_DB_URL", "PCF_DB"))
    """``sqlite:///path`` or ``postgresql://...`` (``PCF_NODE_DB_URL``, or ``PCF_DB``); default
    ``sqlite:///<home>/node.db``."""
    min_participants: int = Field(default=3, ge=3)
    """The least ``min_participants`` this firm accepts in a round (``PCF_NODE_MIN_PARTICIPANTS``): the node
    refuses to approve, and to contribute to, a round whose spec allows publication over fewer firms.
    Never below 3 (``protocols.disclosure.MIN_PARTICIPANTS_FLOOR``)."""
    db_auto_upgrade: bool = True
    """Upgrade a PostgreSQL database's schema when the node opens it (``PCF_NODE_DB_AUTO_UPGRADE``).
    When false a database that is behind is refused and ``pcf node db upgrade`` upgrades it. A SQLite
    file is always upgraded."""

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def database_url(self) -> str:
        """The configured database URL, or the SQLite file under ``home``."""
        return self.db_url or f"sqlite:///{self.home / 'node.db'}"
