"""`pcf keys ...` driven through the `pcf` CLI: identities, TLS, SuperNode keys and a deployment."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store
from typer.testing import CliRunner

from keys import identity
from keys.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_EXISTS,
    EXIT_KEY_FILE,
    EXIT_PASSWORD,
)
from pcf.cli import app

COMPOSE = Path(__file__).resolve().parents[1] / "compose" / "compose.yml"
runner = CliRunner()


def pcf(*args: str) -> tuple[int, Any]:
    result = runner.invoke(app, ["keys", *args])
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.stdout + result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- identity


def test_identity_new_then_show_round_trips_the_public_key_in_a_0600_file(tmp_path: Path) -> None:
    key_file = tmp_path / "firm" / "identity.key"

    code, created = pcf("identity", "new", "--out", str(key_file), "--json")
    code_show, shown = pcf("identity", "show", str(key_file), "--json")

    assert code == 0 and code_show == 0
    assert mode(key_file) == 0o600
    loaded = identity.load_private_key(key_file)
    assert created["public_key"] == shown["public_key"] == identity.public_key_b64(loaded)
    assert created["fingerprint"] == shown["fingerprint"] == identity.fingerprint(created["public_key"])
    assert shown["encrypted"] is False


def test_identity_new_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    key_file = tmp_path / "identity.key"
    _, first = pcf("identity", "new", "--out", str(key_file), "--json")
    before = key_file.read_bytes()

    code, refused = pcf("identity", "new", "--out", str(key_file), "--json")
    unchanged = key_file.read_bytes()
    code_forced, forced = pcf("identity", "new", "--out", str(key_file), "--force", "--json")

    assert code == EXIT_EXISTS and "--force" in refused["error"]
    assert unchanged == before
    assert code_forced == 0 and forced["public_key"] != first["public_key"]
    assert mode(key_file) == 0o600


def test_identity_with_password_env_is_encrypted_and_needs_it_to_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "identity.key"
    monkeypatch.setenv("PCF_TEST_PW", "correct horse battery")
    _, created = pcf("identity", "new", "--out", str(key_file), "--password-env", "PCF_TEST_PW", "--json")

    code_without, _ = pcf("identity", "show", str(key_file), "--json")
    code_with, shown = pcf("identity", "show", str(key_file), "--password-env", "PCF_TEST_PW", "--json")
    code_unset, unset = pcf("identity", "show", str(key_file), "--password-env", "PCF_NOT_SET_ANYWHERE", "--json")

    assert b"ENCRYPTED" in key_file.read_bytes()
    assert code_without == EXIT_KEY_FILE
    assert code_with == 0 and shown["public_key"] == created["public_key"] and shown["encrypted"] is True
    assert code_unset == EXIT_PASSWORD and "PCF_NOT_SET_ANYWHERE" in unset["error"]


def test_identity_show_refuses_a_key_file_readable_by_others(tmp_path: Path) -> None:
    key_file = tmp_path / "identity.key"
    pcf("identity", "new", "--out", str(key_file), "--json")
    key_file.chmod(0o644)

    code, out = pcf("identity", "show", str(key_file), "--json")

    assert code == EXIT_KEY_FILE and "0644" in out["error"]


# --------------------------------------------------------------------------- TLS and SuperNode keys


def test_tls_server_certificate_verifies_against_the_ca_for_every_requested_name(tmp_path: Path) -> None:
    code, info = pcf(
        "tls", "--out", str(tmp_path), "--host", "superlink", "--host", "link.example.org",
        "--ip", "127.0.0.1", "--ip", "::1", "--json",
    )

    assert code == 0
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    key = serialization.load_pem_private_key((tmp_path / "server.key").read_bytes(), password=None)
    assert mode(tmp_path / "server.key") == 0o600
    assert key.public_key() == cert.public_key()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"superlink", "link.example.org"}
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert set(info["subject_alt_names"]) == {"superlink", "link.example.org", "127.0.0.1", "::1"}
    verifier_for = PolicyBuilder().store(Store([ca]))
    for name in (x509.DNSName("superlink"), x509.DNSName("link.example.org")):
        chain = verifier_for.build_server_verifier(name).verify(cert, [])
        assert chain[-1] == ca
    with pytest.raises(Exception, match="(?i)subject|name"):
        verifier_for.build_server_verifier(x509.DNSName("other.example.org")).verify(cert, [])


def test_tls_refuses_a_malformed_ip_and_existing_files(tmp_path: Path) -> None:
    code_ip, bad_ip = pcf("tls", "--out", str(tmp_path), "--ip", "999.1.1.1", "--json")
    pcf("tls", "--out", str(tmp_path), "--host", "superlink", "--json")
    before = (tmp_path / "server.pem").read_bytes()

    code_again, _ = pcf("tls", "--out", str(tmp_path), "--host", "superlink", "--json")

    assert code_ip == EXIT_BAD_INPUT and "999.1.1.1" in bad_ip["error"]
    assert code_again == EXIT_EXISTS and (tmp_path / "server.pem").read_bytes() == before


def test_supernode_keys_load_as_flower_reads_them(tmp_path: Path) -> None:
    from flwr.cli.supernode.register import try_load_public_key

    code, info = pcf("supernode", "--out", str(tmp_path), "--name", "node1", "--json")

    assert code == 0
    private = serialization.load_ssh_private_key((tmp_path / "node1.key").read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
    assert mode(tmp_path / "node1.key") == 0o600
    public = serialization.load_ssh_public_key((tmp_path / "node1.pub").read_bytes())
    assert public == private.public_key()
    assert info["public_key"] == (tmp_path / "node1.pub").read_text().strip()
    assert try_load_public_key(tmp_path / "node1.pub")  # what `flwr supernode register` accepts


# --------------------------------------------------------------------------- deployment


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return doc


def _mounted_secrets(compose: dict[str, Any]) -> dict[str, set[str]]:
    """Service -> the ./secrets/... paths it bind-mounts (short or long volume syntax)."""
    mounted: dict[str, set[str]] = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.get("source") if isinstance(volume, dict) else volume.split(":", 1)[0]
            if isinstance(source, str) and source.startswith("./secrets/"):
                mounted.setdefault(name, set()).add(source)
    return mounted


def _env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_deployment_writes_every_file_compose_mounts_and_every_required_variable(tmp_path: Path) -> None:
    out = tmp_path / "secrets"

    code, result = pcf("deployment", "--out", str(out), "--nodes", "3", "--json")

    assert code == 0, result
    mounted = _mounted_secrets(_compose())
    assert set(mounted) == {"superlink", "aggregator", "node1", "node2", "node3"}
    for service, sources in mounted.items():
        for source in sources:
            assert (out / source.removeprefix("./secrets/")).is_file(), f"{service} mounts {source}"
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE.read_text(encoding="utf-8")))
    assert {"POSTGRES_PASSWORD", "PCF_AGG_ADMIN_TOKEN", "PCF_AGG_PACT_CLIENT_SECRET"} <= required
    env = _env(out / ".env")
    assert required <= set(env)
    assert required <= set(_env(out / "node1" / "node.env"))
    secrets_ = [env["POSTGRES_PASSWORD"], env["PCF_AGG_ADMIN_TOKEN"], env["PCF_AGG_PACT_CLIENT_SECRET"]]
    assert len(set(secrets_)) == 3 and all(len(s) >= 32 for s in secrets_)
    for private in [out / ".env", out / "tls" / "server.key", out / "aggregator" / "identity.key",
                    *(out / f"node{i}" / n for i in (1, 2, 3) for n in ("identity.key", "supernode.key"))]:
        assert mode(private) == 0o600, private
    roster = json.loads((out / "roster.json").read_text())
    assert roster == [(out / f"node{i}" / "identity.pub").read_text().strip() for i in (1, 2, 3)]
    assert {f["path"] for f in result["files"]} >= {str(out / ".env"), str(out / "tls" / "ca.crt")}


def test_deployment_secrets_satisfy_the_aggregator_and_node_placeholders_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from aggregator.settings import AggregatorSettings

    out = tmp_path / "secrets"
    pcf("deployment", "--out", str(out), "--nodes", "1", "--json")
    for source in (out / ".env", out / "node1" / "node.env"):
        for k, v in _env(source).items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("PCF_AGG_ENVIRONMENT", "production")
        if source.name == ".env":
            settings = AggregatorSettings()  # type: ignore[call-arg]
            assert settings.admin_token.get_secret_value() == _env(source)["PCF_AGG_ADMIN_TOKEN"]
        else:
            with pytest.raises(ValidationError, match="placeholder"):
                AggregatorSettings()  # type: ignore[call-arg]


def test_deployment_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "secrets"
    pcf("deployment", "--out", str(out), "--nodes", "1", "--json")
    env_before = (out / ".env").read_text()

    code, refused = pcf("deployment", "--out", str(out), "--nodes", "1", "--json")
    env_after_refusal = (out / ".env").read_text()
    code_forced, _ = pcf("deployment", "--out", str(out), "--nodes", "1", "--force", "--json")

    assert code == EXIT_EXISTS and ".env" in refused["error"]
    assert env_after_refusal == env_before
    assert code_forced == 0 and (out / ".env").read_text() != env_before


def test_deployment_certificate_names_the_superlink_hosts_and_loopback(tmp_path: Path) -> None:
    out = tmp_path / "secrets"

    code, _ = pcf("deployment", "--out", str(out), "--nodes", "1", "--superlink-host", "link.example.org", "--json")

    assert code == 0
    cert = x509.load_pem_x509_certificate((out / "tls" / "server.pem").read_bytes())
    names = {str(n.value) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}
    assert names == {"link.example.org", "superlink", "localhost", "127.0.0.1"}
    assert _env(out / ".env")["PCF_SUPERLINK_ADDRESS"] == "link.example.org:9092"
    assert 'address = "superlink:9092"' in (out / "aggregator" / "flwr-config.toml").read_text()
