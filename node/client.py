"""The node's HTTPS client of the aggregator: enrolment, invitations, paillier contributions.

Every request after enrolment is signed with the node's identity key (protocols.auth), and every
request the node's HTTP client sends is appended to its outbox just before it leaves, by a hook on
the client itself (:func:`record_requests`), so none leaves unrecorded.

Pins, no trust on first use: at enrolment the firm gives the aggregator's URL, the CA certificate
and the aggregator's identity key, all published by the association out of band
(``pcf node enroll --aggregator URL --ca CA.crt --aggregator-key KEY``). They are stored in the
node's settings (:data:`AGGREGATOR_CA_SETTING`, ``AGGREGATOR_KEY_SETTING``, ``AGGREGATOR_URL_SETTING``).
Every connection trusts that CA only (no system roots), and before a client sends its first
signed request or its enrolment it reads ``GET /api/v1/aggregator`` (a public read that carries
nothing of the firm; outbox stage :data:`PEER_CHECK_STAGE`) and refuses a server whose key is not the pinned one
(:class:`AggregatorMismatch`). Plain ``http://`` only with ``--insecure-http``, for development.
"""

from __future__ import annotations

import json
import secrets
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from keys.errors import InvalidSignature
from keys.identity import b64url_encode, fingerprint, load_private_key, load_public_key_b64, public_key_b64, verify
from keys.tls import ca_fingerprint, client_context
from node.audit import audit_round, keep_context, kept_contexts
from node.cohort import OWN_CERTIFICATE_SETTING, pin_authority_key, pinned_authority_key, revocation_list
from node.contribute import PAILLIER_KEY_SETTING, check_paillier_key
from node.rounds import (
    AGGREGATOR_KEY_SETTING,
    AGGREGATOR_URL_SETTING,
    ConsentError,
    approved_contribution,
    invitation,
    log_outbound,
    receive_invitation,
)
from node.store import NodeStore
from protocols import paillier
from protocols.auth import sign_enrollment, sign_request
from protocols.canonical import Kind, canonical_json, encode
from protocols.certificates import MemberCertificate, verify_certificate
from protocols.disclosure import ContextRejected, SignedStageContext, Stage, check_context, stage_vector, verify_context
from protocols.factor import PublishedFactor
from protocols.roster import SignedRoster
from protocols.spec import SignedSpec
from protocols.translog import PUBLICATION, LogEntry, LogPage, verify_chain

__all__ = [
    "AGGREGATOR_CA_SETTING",
    "AGGREGATOR_INSECURE_HTTP_SETTING",
    "PAILLIER_KEY_SETTING",
    "PEER_CHECK_STAGE",
    "SENT_STAGES_SETTING",
    "AggregatorClient",
    "AggregatorMismatch",
    "NodeClientError",
    "identity_path",
]

AGGREGATOR_CA_SETTING = "aggregator_ca_pem"
"""PEM of the CA the aggregator's HTTPS certificate must chain to, pinned at enrolment (``--ca``)."""
AGGREGATOR_INSECURE_HTTP_SETTING = "aggregator_insecure_http"
"""``"1"`` when the firm enrolled over plain HTTP with ``--insecure-http`` (development only)."""
PEER_CHECK_STAGE = "aggregator key check"
"""Outbox stage of the public key read that precedes a client's first signed request or enrolment."""
SENT_STAGES_SETTING = "paillier_sent:{round_id}"
"""Node setting: JSON list of the disclosure stages of a ``paillier`` round this node posted (each once)."""



class NodeClientError(RuntimeError):
    """The aggregator refused a request or could not be reached; the message says which and why."""


class AggregatorMismatch(NodeClientError):
    """The server is not the pinned aggregator: a certificate not from the pinned CA, or another identity key.

    Raised before anything of the firm is sent (the TLS handshake, or the public key read, failed).
    """


def _check_scheme(url: str, insecure_http: bool) -> str:
    scheme = httpx.URL(url).scheme
    if scheme == "http" and not insecure_http:
        raise NodeClientError(
            f"{url}: plain HTTP; accepted: an https:// URL with the association's CA (--ca), or "
            "--insecure-http for development (signed requests then travel in clear)")
    if scheme not in ("http", "https"):
        raise NodeClientError(f"{url}: accepted are https:// URLs (http:// only with --insecure-http)")
    return scheme


def _http_client(url: str, ca_pem: str | None, insecure_http: bool) -> httpx.Client:
    """An HTTP client that trusts only the pinned CA; plain HTTP only when the firm chose it."""
    if _check_scheme(url, insecure_http) == "http":
        return httpx.Client(timeout=30.0, trust_env=False)
    if ca_pem is None:
        raise NodeClientError(
            f"{url}: no CA pinned for the aggregator's certificate; enrol with --ca CA.crt as the association "
            "published it (no trust on first use)")
    try:
        context = client_context(ca_pem)
    except ValueError as exc:
        raise NodeClientError(f"the pinned aggregator CA: {exc}") from None
    # trust_env off: no SSL_CERT_FILE, proxy or netrc from the environment changes whom the node trusts
    return httpx.Client(timeout=30.0, verify=context, trust_env=False)


def _is_key(text: str) -> bool:
    try:
        fingerprint(text)
    except ValueError:
        return False
    return True


OUTBOX_EXTENSION = "pcf.outbox"
"""Request extension naming the outbox entry of a request: ``(sender, round_id, stage)``."""

_FIRST_SENDER: weakref.WeakKeyDictionary[httpx.Client, object] = weakref.WeakKeyDictionary()


def record_requests(http: httpx.Client, store: NodeStore, recipient: str, sender: object) -> None:
    """Make ``http`` append every request ``sender`` sends to ``store``'s outbox, just before it leaves.

    The entry is the SHA-256 of the request line, headers and body as sent; round and stage come
    from the request's :data:`OUTBOX_EXTENSION` ``(sender, round_id, stage)``. A request without
    one (made on the client directly) is recorded by the first sender that hooked the client (round
    ``-``, stage ``METHOD /path``). Recording at the transport, not at each call site, means no
    request leaves unrecorded; a client shared by several senders (tests) records each request once.
    """
    first = _FIRST_SENDER.setdefault(http, sender)

    def record(request: httpx.Request) -> None:
        tag = request.extensions.get(OUTBOX_EXTENSION)
        if (tag[0] if tag else first) is not sender:
            return
        round_id, stage = tag[1:] if tag else ("-", f"{request.method} {request.url.path}")
        line = f"{request.method} {request.url.raw_path.decode('ascii')}\n".encode()
        headers = "".join(f"{k}: {v}\n" for k, v in request.headers.items()).encode()
        log_outbound(store, round_id, recipient, stage, line + headers + request.read())

    hooks = http.event_hooks
    http.event_hooks = {**hooks, "request": [*hooks.get("request", []), record]}


def identity_path(home: Path) -> Path:
    return home / "identity.pem"


def _raise_for(resp: httpx.Response, what: str) -> None:
    if resp.status_code >= 400:
        try:
            detail = resp.json()
        except ValueError:
            detail = resp.text[:300]
        raise NodeClientError(f"{what}: the aggregator answered {resp.status_code}: {detail}")


class AggregatorClient:
    """Talks to one aggregator on behalf of one node."""

    def __init__(self, store: NodeStore, home: Path, base_url: str | None = None,
                 http: httpx.Client | None = None, key: Ed25519PrivateKey | None = None, *,
                 ca_pem: str | None = None, insecure_http: bool | None = None):
        """``base_url``, ``ca_pem`` and ``insecure_http`` default to the pins stored at enrolment; ``http``
        (tests) replaces the pinned-CA client, the URL scheme rule still applies."""
        self.store = store
        self.home = home
        url = base_url or store.get_setting(AGGREGATOR_URL_SETTING)
        if not url:
            raise NodeClientError("no aggregator URL: enrol first (pcf node enroll --aggregator URL --ca CA.crt "
                                  "--aggregator-key KEY)")
        self.base_url = url.rstrip("/")
        self.ca_pem = ca_pem if ca_pem is not None else store.get_setting(AGGREGATOR_CA_SETTING)
        self.insecure_http = (insecure_http if insecure_http is not None
                              else store.get_setting(AGGREGATOR_INSECURE_HTTP_SETTING) == "1")
        _check_scheme(self.base_url, self.insecure_http)
        self.http = http or _http_client(self.base_url, self.ca_pem, self.insecure_http)
        record_requests(self.http, store, self.base_url, self)
        self.key = key or load_private_key(identity_path(home))
        self._peer_checked: str | None = None
        self._owns_http = http is None

    def close(self) -> None:
        """Close the HTTP client this object made (not one it was given)."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_peer(self, expected_key: str | None = None) -> str:
        """Read the server's identity key and refuse it unless it is ``expected_key`` (default: the pinned one).

        The first request of a client: with the pinned CA the TLS handshake fails for any other
        server, and a server of that CA with another key fails here; either way nothing of the firm
        has been sent. Returns the key.

        Raises
        ------
        AggregatorMismatch
            Certificate not from the pinned CA (or not for this host), or another identity key.
        NodeClientError
            No pinned key, the server cannot be reached, or it does not answer the key read.
        """
        expected = expected_key or self.store.get_setting(AGGREGATOR_KEY_SETTING)
        if expected is None:
            raise NodeClientError("no aggregator key pinned: enrol first with --aggregator-key KEY")
        if self._peer_checked == expected:
            return expected
        challenge = b64url_encode(secrets.token_bytes(32))
        try:
            # recorded like every request (stage "aggregator key check"); it carries nothing of the firm
            info = self.http.get(self.base_url + "/api/v1/aggregator", params={"challenge": challenge},
                                 extensions={OUTBOX_EXTENSION: (self, "-", PEER_CHECK_STAGE)})
        except httpx.HTTPError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
                pinned = f" (CA sha256 {ca_fingerprint(self.ca_pem)[:16]})" if self.ca_pem else ""
                raise AggregatorMismatch(
                    f"certificate mismatch: the server at {self.base_url} presents a TLS certificate the CA this "
                    f"node pinned at enrolment{pinned} did not issue for this host ({exc}); not sending anything. "
                    "If the association changed its CA, re-enrol with the new --ca it published") from None
            raise NodeClientError(f"cannot reach the aggregator at {self.base_url}: {exc}") from None
        _raise_for(info, "reading the aggregator's key")
        seen = str(info.json().get("public_key", ""))
        if seen != expected:
            shown = fingerprint(seen) if _is_key(seen) else repr(seen[:60])
            raise AggregatorMismatch(
                f"aggregator key mismatch: the server at {self.base_url} presents key {shown}, not the "
                f"{fingerprint(expected)} this node pinned (--aggregator-key); not sending anything")
        try:
            # a copy of the public key is not enough: the server must hold the private half
            verify(expected, encode(Kind.AGGREGATOR_CHALLENGE, {"challenge": challenge}),
                   str(info.json().get("challenge_signature") or ""))
        except InvalidSignature:
            raise AggregatorMismatch(
                f"aggregator key mismatch: the server at {self.base_url} shows the key this node pinned "
                f"({fingerprint(expected)}) but cannot sign with it; not sending anything") from None
        self._peer_checked = expected
        return expected

    def _signed(self, method: str, path: str, body: bytes = b"", *, round_id: str = "-",
                stage: str | None = None) -> httpx.Response:
        self.check_peer()  # first: a signed request never goes to a server that is not the pinned aggregator
        headers = sign_request(self.key, method, path, body, datetime.now(UTC))
        if body:
            headers["Content-Type"] = "application/json"
        return self.http.request(method, self.base_url + path, content=body or None, headers=headers,
                                 extensions={OUTBOX_EXTENSION: (self, round_id, stage or f"{method} {path.split('?')[0]}")})

    # -- enrolment -----------------------------------------------------------------------------

    def enroll(self, org_zh: str, org_en: str, supernode_public_key: str,
               aggregator_key: str | None = None, *, certificate: MemberCertificate | None = None,
               authority_key: str | None = None) -> dict[str, Any]:
        """Check the server against the pins given, store them, and send the signed enrolment.

        ``aggregator_key`` is the aggregator's identity key as the association published it:
        required (no trust on first use). The CA and the plain-HTTP choice are the client's
        (``ca_pem``, ``insecure_http``). ``authority_key`` is the membership authority's key as it
        published it (pinned: every roster member's certificate is checked against it, ``node.cohort``);
        ``certificate`` is the firm's own certificate by that authority, sent with the enrolment.
        """
        if not aggregator_key:
            raise NodeClientError(
                "no aggregator key given: pass --aggregator-key KEY as the association published it "
                "(the node trusts no key on first use)")
        try:
            fingerprint(aggregator_key)
        except ValueError as exc:
            raise NodeClientError(f"--aggregator-key: {exc}") from None
        seen = self.check_peer(aggregator_key)
        self.store.set_setting(AGGREGATOR_URL_SETTING, self.base_url)
        self.store.set_setting(AGGREGATOR_KEY_SETTING, seen)
        if self.ca_pem is not None:
            self.store.set_setting(AGGREGATOR_CA_SETTING, self.ca_pem)
        self.store.set_setting(AGGREGATOR_INSECURE_HTTP_SETTING, "1" if self.insecure_http else "0")
        if authority_key is not None:
            pin_authority_key(self.store, authority_key)
        if certificate is not None:
            pinned = pinned_authority_key(self.store)
            if pinned is not None:  # a certificate no node would accept is not worth sending
                verify_certificate(certificate, pinned, revocation_list(self.store), now=datetime.now(UTC),
                                   identity_public_key=public_key_b64(self.key))
            self.store.set_setting(OWN_CERTIFICATE_SETTING, certificate.model_dump_json())
        body = sign_enrollment(self.key, org_zh, org_en, supernode_public_key,
                               certificate).model_dump_json().encode()
        resp = self.http.post(self.base_url + "/api/v1/members/enroll", content=body,
                              headers={"Content-Type": "application/json"}, extensions={OUTBOX_EXTENSION: (self, "-", "enroll")})
        if resp.status_code != 409:  # 409: already enrolled with this key
            _raise_for(resp, "enrolment")
        return self.me()

    def me(self) -> dict[str, Any]:
        resp = self._signed("GET", "/api/v1/members/me")
        _raise_for(resp, "reading this member's status")
        return dict(resp.json())

    # -- invitations ---------------------------------------------------------------------------

    def fetch_invitations(self) -> list[str]:
        """Fetch open rounds, verify spec and roster signatures, keep them; returns the round ids."""
        resp = self._signed("GET", "/api/v1/rounds?state=open")
        _raise_for(resp, "listing open rounds")
        got = []
        for item in resp.json():
            signed = SignedSpec.model_validate(item["signed_spec"])
            roster = SignedRoster.model_validate(item["roster"]) if item.get("roster") else None
            if roster is None:
                continue  # a round is joinable only once its signed roster (who else is in it) is fixed
            spec = receive_invitation(self.store, signed, roster)
            if item.get("paillier_public_key"):
                self.store.set_setting(f"paillier_key:{spec.round_id}", json.dumps(item["paillier_public_key"]))
            got.append(spec.round_id)
        return got

    # -- paillier ------------------------------------------------------------------------------

    def stage_status(self, round_id: str) -> dict[str, Any]:
        """``GET /api/v1/rounds/{id}/stage``: the stage the round waits for, its signed context and slot count."""
        resp = self._signed("GET", f"/api/v1/rounds/{round_id}/stage", round_id=round_id, stage="paillier:stage")
        _raise_for(resp, f"reading the stage of round {round_id}")
        return dict(resp.json())

    def sent_stages(self, round_id: str) -> list[str]:
        """The stages of ``round_id`` this node already posted (:data:`SENT_STAGES_SETTING`)."""
        raw = self.store.get_setting(SENT_STAGES_SETTING.format(round_id=round_id))
        return [str(s) for s in json.loads(raw)] if raw else []

    def contribute_paillier(self, round_id: str) -> dict[str, Any]:
        """Post this firm's contribution to the disclosure stage the round waits for, unless already sent.

        While the round is open that is the ``screen`` stage; afterwards the node reads
        ``GET /rounds/{id}/stage``, verifies the stage context with the aggregator key it pinned at
        enrolment, checks it against the signed spec and its own approved values
        (``protocols.disclosure.check_context``), computes its stage vector from the approved
        contribution, refuses any value its slot does not accept, encrypts it to the custodians'
        key and posts it. Each stage is posted once (recorded in the node's settings).

        Returns
        -------
        dict
            ``round_id``, ``state``, ``sent`` (the stage posted now, or ``None``), ``receipt``,
            ``waiting_for`` (the stage the round now waits for, ``None`` once it ended),
            ``sent_stages`` and ``decision``.
        """
        spec, _roster = invitation(self.store, round_id)
        if spec.protocol != "paillier":
            raise ConsentError(f"round {round_id} uses {spec.protocol}; its inputs travel through the SuperLink")
        raw = self.store.get_setting(f"paillier_key:{round_id}")
        if raw is None:
            raise ConsentError(f"no encryption key for round {round_id}; run `pcf node rounds` first")
        # key_id is the key's canonical digest (from_dict refuses one that does not match n and custodians)
        public = paillier.SplitPublicKey.from_dict(json.loads(raw))
        # before anything is encrypted or sent: pinned out of band == named by the signed spec == served
        check_paillier_key(self.store.get_setting(PAILLIER_KEY_SETTING), spec, public.key_id)
        _spec, contribution = approved_contribution(self.store, round_id)
        status = self.stage_status(round_id)
        sent = self.sent_stages(round_id)
        result: dict[str, Any] = {"round_id": round_id, "state": status.get("state"), "sent": None, "receipt": None,
                                  "waiting_for": status.get("stage"), "sent_stages": sent,
                                  "decision": status.get("decision")}
        name = status.get("stage")
        if name is None or name in sent or not status.get("accepting"):
            return result
        stage = Stage(name)
        context = None
        if stage != Stage.SCREEN:
            pinned = self.store.get_setting(AGGREGATOR_KEY_SETTING)
            if pinned is None:
                raise NodeClientError("no aggregator key pinned: enrol first with --aggregator-key KEY")
            try:
                signed = SignedStageContext.model_validate(status.get("context"))
                context = verify_context(signed, load_public_key_b64(pinned))
                check_context(spec, context, stage, public_key_b64(self.key), contribution.ints)
            except (ContextRejected, ValidationError) as exc:
                raise ConsentError(f"round {round_id}, stage {stage}: nothing was sent: {exc}") from None
            keep_context(self.store, signed)  # the evidence for `pcf node audit` (node.audit)
        vector = stage_vector(spec, contribution.ints, stage, context)
        if status.get("slots") != len(vector):
            raise ConsentError(
                f"round {round_id}, stage {stage}: the aggregator asks for {status.get('slots')} slots, the signed spec "
                f"and stage context give {len(vector)}; nothing was sent")
        signed_contribution = paillier.encrypt_stage(public, spec, stage, context, vector, self.key)
        body = canonical_json(signed_contribution.to_dict())
        resp = self._signed("POST", paillier.contribution_path(round_id, str(stage)), body, round_id=round_id,
                            stage=f"paillier:contribution:{stage}")
        if resp.status_code == 409 and "already contributed" in resp.text:
            self._record_sent(round_id, [*sent, str(stage)])  # sent before (a lost answer): never again
        _raise_for(resp, f"contributing stage {stage} to round {round_id}")
        sent = self._record_sent(round_id, [*sent, str(stage)])
        after = self.stage_status(round_id)
        return result | {"state": after.get("state"), "sent": str(stage), "receipt": dict(resp.json()),
                         "waiting_for": after.get("stage"), "sent_stages": sent, "decision": after.get("decision")}

    def _record_sent(self, round_id: str, stages: list[str]) -> list[str]:
        unique = list(dict.fromkeys(stages))
        self.store.set_setting(SENT_STAGES_SETTING.format(round_id=round_id), json.dumps(unique))
        return unique


    # -- audit -----------------------------------------------------------------------------------

    def audit(self, round_id: str) -> dict[str, Any]:
        """Compare the stage contexts this node kept for ``round_id`` with the log and the published factor.

        The log is read page by page and its chain checked against the pinned aggregator key
        (``protocols.translog.verify_chain``); see :func:`node.audit.audit_round` for what is compared.
        """
        self.check_peer()
        entries: list[LogEntry] = []
        next_seq: int | None = 1
        while next_seq is not None:
            resp = self.http.get(f"{self.base_url}/api/v1/log", params={"from_seq": next_seq})
            _raise_for(resp, "reading the transparency log")
            page = LogPage.model_validate(resp.json())
            entries.extend(page.entries)
            if page.next_seq is not None and page.next_seq <= next_seq:
                raise NodeClientError(f"the log's paging does not advance (next_seq {page.next_seq})")
            next_seq = page.next_seq
        resp = self.http.get(f"{self.base_url}/api/v1/members/keys")
        _raise_for(resp, "reading the members' keys")
        member_keys = {str(k["fingerprint"]): str(k["identity_public_key"]) for k in resp.json()}
        broken = verify_chain(entries, self.store.get_setting(AGGREGATOR_KEY_SETTING) or "", member_keys)
        if broken is not None:
            raise NodeClientError(f"the transparency log breaks at seq {broken.seq}: {broken.reason}")
        factor: PublishedFactor | None = None
        published = [e for e in entries if e.type == PUBLICATION and e.payload.get("round_id") == round_id]
        if published:
            fid, version = published[-1].payload["factor_id"], published[-1].payload["version"]
            resp = self.http.get(f"{self.base_url}/api/v1/factors/{fid}", params={"version": version})
            _raise_for(resp, f"reading factor {fid}")
            factor = PublishedFactor.model_validate(resp.json())
        findings = audit_round(self.store, round_id, entries, factor)
        return {
            "round_id": round_id,
            "contexts": [str(c.context.stage) for c in kept_contexts(self.store, round_id)],
            "published": factor is not None,
            "findings": [f.__dict__ for f in findings],
        }


def node_public_summary(home: Path) -> dict[str, str]:
    key = load_private_key(identity_path(home))
    pub = public_key_b64(key)
    return {"identity_public_key": pub, "fingerprint": fingerprint(pub)}
