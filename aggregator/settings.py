"""Configuration of the aggregator role, read from ``PCF_AGG_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PLACEHOLDER_SECRETS", "AggregatorDatabaseSettings", "AggregatorSettings"]

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "changethis", "secret", "password", "admin", "token", "test", "xxx"}
)
"""Values refused for a secret outside ``environment == "development"`` (compared case-insensitively)."""

_MIN_SECRET_LENGTH = 16


class AggregatorDatabaseSettings(BaseSettings):
    """Where the aggregator's database is, and whether opening it may upgrade its schema.

    The part of :class:`AggregatorSettings` that ``pcf agg db ...`` needs (no secrets).
    """

    model_config = SettingsConfigDict(env_prefix="PCF_AGG_", extra="ignore", populate_by_name=True)

    home: Path = Field(default_factory=lambda: Path("~/.pcf/aggregator").expanduser())
    """Directory for the default SQLite database and identity key (``PCF_AGG_HOME``)."""
    db_url: str | None = None
    """``sqlite:///path`` or ``postgresql://...``; default ``sqlite:///<home>/aggregator.db``."""
    db_auto_upgrade: bool = True
    """Upgrade a PostgreSQL database's schema when the service starts (``PCF_AGG_DB_AUTO_UPGRADE``).
    Set it false where schema changes are a deployment step of their own: the service then refuses a
    database that is behind, and ``pcf agg db upgrade`` upgrades it. A SQLite file, which belongs to
    this one service, is always upgraded."""

    @property
    def database_url(self) -> str:
        """The configured database URL, or the SQLite file under ``home``."""
        return self.db_url or f"sqlite:///{self.home / 'aggregator.db'}"


class AggregatorSettings(AggregatorDatabaseSettings):
    """Settings of one aggregator deployment.

    Secrets (``admin_token``, ``pact_client_secret``) have no default; outside development a
    placeholder value or a token shorter than 16 characters is refused at start-up.
    """

    environment: Literal["development", "staging", "production"] = "production"
    admin_token: SecretStr
    """Bearer token of the association's administrators."""
    identity_key_path: Path | None = None
    """Ed25519 identity key of the aggregator; default ``<home>/identity.key`` (created if absent)."""
    paillier_public_key_path: Path | None = None
    """``paillier_public_key.json`` from the custodians' key ceremony; needed for ``paillier`` rounds."""
    pact_client_id: str = "pcf-aggregator"
    pact_client_secret: SecretStr
    """Client secret of the PACT v3 OAuth2 client-credentials flow."""
    public_base_url: str = "https://127.0.0.1:8080"
    tls_certfile: Path | None = None
    """PEM certificate the API serves over HTTPS (``PCF_AGG_TLS_CERTFILE``): ``tls/aggregator.pem`` from
    ``pcf keys deployment`` or ``pcf keys tls --aggregator-host``, issued by the CA nodes pin at enrolment."""
    tls_keyfile: Path | None = None
    """Its private key (``PCF_AGG_TLS_KEYFILE``)."""
    insecure_http: bool = False
    """Development only: ``pcf agg serve`` serves plain HTTP (``PCF_AGG_INSECURE_HTTP``, ``--insecure-http``).
    The service then refuses the admin token and PACT credentials (they would have crossed the network in
    clear): only public reads and signed member requests work. Refused outside ``development``."""
    national_db_push_url: str | None = None
    """Where ``pcf agg publish`` delivers factor packages when no ``--to`` is given (read by the CLI)."""
    authority_public_key: str | None = None
    """The membership authority's Ed25519 public key (``PCF_AGG_AUTHORITY_PUBLIC_KEY``, from ``pcf authority
    init``). When set, enrolment needs a valid certificate of that authority for the enrolling key, and rosters
    hold only members whose certificate is still valid. Nodes and custodians check the certificates themselves,
    against the key they pinned: this setting only spares the aggregator members no node would accept."""
    superlink_address: str | None = None
    """``host:port`` of the Flower SuperLink (its Control API). When set, approving a member registers its
    SuperNode key there and ``secagg`` rounds run over it (:mod:`aggregator.flower_runner`)."""
    superlink_root_certificates: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "superlink_root_certificates",
            "superlink_root_cert",
            "PCF_AGG_SUPERLINK_ROOT_CERTIFICATES",
            "PCF_AGG_SUPERLINK_ROOT_CERT",
        ),
    )
    """CA certificate (PEM) the SuperLink's TLS certificate is checked against
    (``PCF_AGG_SUPERLINK_ROOT_CERTIFICATES`` or ``PCF_AGG_SUPERLINK_ROOT_CERT``)."""
    superlink_certificate: Path | None = None
    superlink_private_key: Path | None = None
    superlink_connection: str = Field(default="pcf", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """Name of the ``[superlink.<name>]`` connection the aggregator writes into ``$FLWR_HOME/config.toml``."""
    flwr_home: Path | None = None
    """``FLWR_HOME`` of the Flower CLI calls (``flwr supernode register``, ``flwr run``); default ``<home>/flwr``."""
    flower_stage_timeout_seconds: float = Field(default=60.0, gt=0)
    """How long the ServerApp waits for the nodes' replies at each secure-aggregation stage."""
    flower_connect_timeout_seconds: float = Field(default=30.0, gt=0)
    """How long the ServerApp waits for the roster's SuperNodes to be connected before it starts."""
    flower_run_timeout_seconds: float = Field(default=600.0, gt=0)
    """Longest wait for a round's result (also capped by the spec's deadline); then the round aborts."""
    flower_record_path: Path | None = None
    """Audit/test only: the ServerApp appends every message it receives to this file (the canary test)."""
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

    @model_validator(mode="after")
    def _check_transport(self) -> AggregatorSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError(
                "PCF_AGG_TLS_CERTFILE and PCF_AGG_TLS_KEYFILE go together; set both (tls/aggregator.pem and "
                "tls/aggregator.key from `pcf keys deployment`) or neither"
            )
        if self.insecure_http and self.environment != "development":
            raise ValueError(
                f"PCF_AGG_INSECURE_HTTP is for development only (PCF_AGG_ENVIRONMENT is {self.environment!r}); "
                "serve HTTPS with PCF_AGG_TLS_CERTFILE and PCF_AGG_TLS_KEYFILE"
            )
        return self

    def serving_tls(self) -> tuple[Path, Path] | None:
        """The certificate and key ``pcf agg serve`` serves HTTPS with; ``None`` for plain HTTP (``insecure_http``).

        Raises
        ------
        ValueError
            Neither TLS files nor ``insecure_http`` are set, or a file cannot be read.
        """
        if self.tls_certfile is None or self.tls_keyfile is None:
            if self.insecure_http:
                return None
            raise ValueError(
                "no TLS certificate: set PCF_AGG_TLS_CERTFILE and PCF_AGG_TLS_KEYFILE (tls/aggregator.pem and "
                "tls/aggregator.key from `pcf keys deployment`, or `pcf keys tls --aggregator-host HOST`); "
                "plain HTTP only with --insecure-http in development"
            )
        for path in (self.tls_certfile, self.tls_keyfile):
            if not path.is_file():
                raise ValueError(f"{path}: no such file; accepted: a PEM file (PCF_AGG_TLS_CERTFILE / _KEYFILE)")
        return self.tls_certfile, self.tls_keyfile

    @property
    def flwr_home_dir(self) -> Path:
        """The configured ``flwr_home``, or ``<home>/flwr``."""
        return self.flwr_home or self.home / "flwr"

    @property
    def identity_key_file(self) -> Path:
        """The configured identity key path, or ``<home>/identity.key``."""
        return self.identity_key_path or self.home / "identity.key"
