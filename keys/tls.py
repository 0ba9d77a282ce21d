"""TLS material (a private CA, the SuperLink's and the aggregator API's server certificates) and SuperNode key pairs."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keys.files import write_private, write_public

__all__ = [
    "DEFAULT_HOSTS",
    "SuperNodeAuthKeys",
    "TlsFiles",
    "ca_fingerprint",
    "client_context",
    "generate_ca",
    "generate_supernode_auth_keys",
    "issue_server_certificate",
    "load_ca_certificate",
    "with_loopback",
    "write_tls_files",
]

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
"""Names a loopback SuperLink is reached by; every one goes into the certificate's SAN."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for ``flower-superlink --ssl-ca-certfile/--ssl-certfile/--ssl-keyfile``.

    ``ca_cert`` is also what SuperNodes (``--root-certificates``) and the ``flwr`` CLI
    (``root-certificates``) use to verify the SuperLink, and what nodes pin at enrolment
    (``pcf node enroll --ca``) to verify the aggregator's HTTPS API. ``aggregator_cert`` /
    ``aggregator_key`` (``PCF_AGG_TLS_CERTFILE`` / ``PCF_AGG_TLS_KEYFILE``) are written when
    aggregator hosts are asked for: the API's own certificate, issued by the same CA.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path
    aggregator_cert: Path | None = None
    aggregator_key: Path | None = None


@dataclass(frozen=True)
class SuperNodeAuthKeys:
    """A SuperNode's authentication key pair (EC P-384).

    ``private_key`` (OpenSSH private-key format, mode 0600) goes to ``flower-supernode
    --auth-supernode-private-key``; ``public_key`` (OpenSSH format) to
    ``flwr supernode register``.
    """

    private_key: Path
    public_key: Path


def _now(now: dt.datetime | None) -> dt.datetime:
    moment = now if now is not None else dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        raise ValueError(f"now={moment!r}: naive datetime; accepted: a timezone-aware datetime")
    return moment


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_ca(
    common_name: str = "pcf-dataspace CA", *, now: dt.datetime | None = None, days: int = 3650
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Create a self-signed CA (EC P-384, path length 0: it signs server certificates only).

    Parameters
    ----------
    common_name : str
        Subject CN of the CA.
    now : datetime | None
        Start of validity (timezone-aware); defaults to the current time.
    days : int
        Validity period.

    Returns
    -------
    tuple
        ``(ca_private_key, ca_certificate)``.
    """
    start = _now(now)
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(minutes=5))
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    now: dt.datetime | None = None,
    days: int = 365,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Issue a TLS server certificate for ``hosts`` (DNS names and IP addresses, all in the SAN).

    Returns
    -------
    tuple
        ``(server_private_key, server_certificate)``.
    """
    if not hosts:
        raise ValueError("issue_server_certificate: hosts is empty; accepted: at least one DNS name or IP address")
    start = _now(now)
    key = ec.generate_private_key(ec.SECP384R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(minutes=5))
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def with_loopback(hosts: Sequence[str]) -> list[str]:
    """``hosts`` followed by ``localhost`` and ``127.0.0.1`` (health checks, the host's own tools), de-duplicated."""
    return list(dict.fromkeys([*hosts, "localhost", "127.0.0.1"]))


def write_tls_files(
    directory: str | os.PathLike[str],
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    now: dt.datetime | None = None,
    aggregator_hosts: Sequence[str] | None = None,
) -> TlsFiles:
    """Create a CA and a server certificate for ``hosts`` and write them as PEM files.

    Writes ``ca.crt``, ``server.pem`` and ``server.key`` (mode 0600) into ``directory``
    (created if missing). With ``aggregator_hosts`` it also writes ``aggregator.pem`` and
    ``aggregator.key``: the aggregator API's certificate, issued by the same CA, for those names
    plus ``localhost`` and ``127.0.0.1``. The CA private key is not kept: a new server certificate
    means a new CA, so no long-lived signing key lies around (and no one can issue a certificate
    a node's pinned CA would accept later).
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = generate_ca(now=now)
    server_key, server_cert = issue_server_certificate(ca_key, ca_cert, hosts, now=now)
    files = TlsFiles(target / "ca.crt", target / "server.pem", target / "server.key")
    # The callers (``pcf keys tls`` / ``deployment``) refuse existing files unless forced.
    write_public(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), overwrite=True)
    write_public(files.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), overwrite=True)
    write_private(files.server_key, _key_pem(server_key), overwrite=True)
    if aggregator_hosts is not None:
        agg_key, agg_cert = issue_server_certificate(ca_key, ca_cert, with_loopback(aggregator_hosts), now=now)
        files = TlsFiles(files.ca_cert, files.server_cert, files.server_key,
                         target / "aggregator.pem", target / "aggregator.key")
        assert files.aggregator_cert is not None and files.aggregator_key is not None
        write_public(files.aggregator_cert, agg_cert.public_bytes(serialization.Encoding.PEM), overwrite=True)
        write_private(files.aggregator_key, _key_pem(agg_key), overwrite=True)
    return files


def client_context(ca_pem: str) -> ssl.SSLContext:
    """A TLS client context that trusts exactly the CA in ``ca_pem`` (no system roots), hostname checked.

    What a node builds from the CA it pinned at enrolment, so a server with a certificate from any
    other CA (public ones included) fails the handshake.

    Raises
    ------
    ValueError
        ``ca_pem`` holds no CA certificate.
    """
    cert = load_ca_certificate(ca_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED, check_hostname on
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    return context


def load_ca_certificate(ca_pem: str) -> x509.Certificate:
    """Parse a PEM CA certificate; refuse one that is not a CA.

    Raises
    ------
    ValueError
        Not a PEM certificate, or its basic constraints do not say CA.
    """
    try:
        cert = x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not a PEM certificate ({exc}); accepted: the CA certificate, e.g. tls/ca.crt") from None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ValueError(f"certificate {cert.subject.rfc4514_string()!r} is not a CA; accepted: the CA certificate (ca.crt)")
    return cert


def ca_fingerprint(ca_pem: str) -> str:
    """SHA-256 (hex) of the CA certificate's DER: the name to read out when checking a pin."""
    return hashlib.sha256(load_ca_certificate(ca_pem).public_bytes(serialization.Encoding.DER)).hexdigest()


def generate_supernode_auth_keys(directory: str | os.PathLike[str], name: str) -> SuperNodeAuthKeys:
    """Create a SuperNode authentication key pair (EC P-384, as ``flwr supernode register`` requires).

    Writes ``<name>.key`` (OpenSSH private key, mode 0600) and ``<name>.pub`` (OpenSSH public
    key) into ``directory``.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    files = SuperNodeAuthKeys(target / f"{name}.key", target / f"{name}.pub")
    # flower-supernode reads the private key with load_ssh_private_key: OpenSSH format.
    write_private(
        files.private_key,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
        overwrite=True,
    )
    write_public(
        files.public_key,
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n",
        overwrite=True,
    )
    return files
