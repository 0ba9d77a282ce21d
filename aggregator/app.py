"""The aggregator's HTTP API: thin FastAPI adapters over ``members``, ``rounds``, ``translog`` and ``delivery``.

Roles and how each proves itself:

* **admin**: ``Authorization: Bearer <PCF_AGG_ADMIN_TOKEN>``;
* **member**: ``X-PCF-Key`` / ``X-PCF-Timestamp`` / ``X-PCF-Signature`` (see :mod:`aggregator.members`),
  approved members only;
* **custodian**: the same signature headers made with a custodian key of the round's Paillier key
  (reading the decryption request), or the signature inside a partial decryption (posting it);
* **public**: no credentials; read-only (published factors, the transparency log, member keys).

Missing or invalid credentials answer 401; valid credentials of a role that does not belong to
the route answer 403. Every error body is :class:`aggregator.errors.ErrorBody`.

Transport: ``pcf agg serve`` serves HTTPS (``PCF_AGG_TLS_CERTFILE`` / ``PCF_AGG_TLS_KEYFILE``).
Whatever serves it, the service refuses (403 ``insecure-transport``) every request that carries an
``Authorization`` header (the admin token, PACT Basic client credentials and PACT bearer tokens) or
goes to the PACT token endpoint, unless the ASGI scope's ``scheme`` is ``https``: uvicorn sets it
from the connection itself (an SSL transport) and, with proxy headers off as ``pcf agg serve``
runs it, nothing a client sends can change it. Signed member and custodian requests need no
secret on the wire and are accepted over either.
"""

from __future__ import annotations

import hmac
import importlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path as FilePath
from typing import Annotated, Literal

import httpx
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator import members, rounds, translog
from aggregator.delivery import DeliveryReceipt, publish_to, sign_package
from aggregator.errors import (
    AggregatorError,
    BadRequest,
    ErrorBody,
    Forbidden,
    InsecureTransport,
    NotFound,
    Unauthorized,
    error_responses,
)
from aggregator.members import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP
from aggregator.repository import StoreFactorRepository
from aggregator.settings import AggregatorSettings
from aggregator.store import MemberRow, Store, open_store, utcnow
from keys import identity
from keys.identity import Ed25519PrivateKey
from protocols import paillier
from protocols.canonical import Kind, encode
from protocols.spec import RoundSpec

__all__ = [
    "API_PREFIX",
    "AggregatorInfo",
    "Health",
    "RequireTlsForSecrets",
    "app_from_env",
    "create_app",
    "load_or_create_identity",
]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
_OPTIONAL_ROUTERS = ("aggregator.factors_api", "aggregator.pact")


# ------------------------------------------------------------------------------------------ models


class Health(BaseModel):
    status: Literal["ok"]


class AggregatorInfo(BaseModel):
    """The aggregator's identity: the key that signs specs, log entries and factor packages."""

    public_key: str
    fingerprint: str
    public_base_url: str
    challenge_signature: str | None = None
    """With ``?challenge=``: the identity key's signature over it (``Kind.AGGREGATOR_CHALLENGE``), so a
    node knows the server holds the key it pinned, not only a copy of the public half."""


_HEX = r"^[0-9a-f]+$"
_SHA256 = r"^[0-9a-f]{64}$"
_B64URL = r"^[A-Za-z0-9_-]+$"  # canonical base64url: no padding (keys.identity.b64url_decode)
_ROUND = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_StageName = Literal["screen", "dominance", "values", "cells"]
"""``protocols.disclosure.Stage`` values: the disclosure stage a paillier contribution or partial is for."""


class ContributionIn(BaseModel):
    """``protocols.paillier.SignedContribution.to_dict()``; ciphertexts in lowercase hex."""

    protocol: Literal["paillier"] = "paillier"
    round_id: str = Field(pattern=_ROUND)
    stage: _StageName = "screen"
    key_id: str = Field(pattern=_SHA256)
    sender: str = Field(pattern=_B64URL, max_length=64)
    ciphertexts: list[Annotated[str, Field(pattern=_HEX, max_length=8192)]] = Field(min_length=1, max_length=4096)
    digest: str = Field(pattern=_SHA256)
    signature: str = Field(pattern=_B64URL, max_length=128)


class PartialIn(BaseModel):
    """``protocols.paillier.PartialDecryption.to_dict()``; partials in lowercase hex."""

    protocol: Literal["paillier"] = "paillier"
    round_id: str = Field(pattern=_ROUND)
    stage: _StageName = "screen"
    key_id: str = Field(pattern=_SHA256)
    custodian_index: int = Field(ge=0, le=1024)
    contribution_digests: list[Annotated[str, Field(pattern=_SHA256)]] = Field(max_length=1_000_000)
    product_digest: str = Field(pattern=_SHA256)
    partials: list[Annotated[str, Field(pattern=_HEX, max_length=8192)]] = Field(min_length=1, max_length=4096)
    signature: str = Field(pattern=_B64URL, max_length=128)


class DeliveryIn(BaseModel):
    url: str = Field(
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$",
        max_length=2000,
        description="The receiver, an absolute http(s) URL (the CLI defaults it to PCF_AGG_NATIONAL_DB_PUSH_URL)",
    )


# ---------------------------------------------------------------------------------------- identity


def load_or_create_identity(path: FilePath) -> Ed25519PrivateKey:
    """The aggregator's Ed25519 key at ``path``, generated (mode 0600) on first start."""
    if path.exists():
        return identity.load_private_key(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = identity.generate_identity()
    identity.save_private_key(key, path)
    log.warning("generated aggregator identity %s at %s", identity.fingerprint(identity.public_key_b64(key)), path)
    return key


# ------------------------------------------------------------------------------------ auth adapters


@dataclass
class _State:
    settings: AggregatorSettings
    ctx: rounds.RoundContext
    max_age: timedelta
    registrar: members.SuperNodeRegistrar | None = None
    unregistrar: members.SuperNodeUnregistrar | None = None

    def now(self) -> datetime:
        return self.ctx.clock()


_bearer = HTTPBearer(auto_error=False, description="Administrator token (PCF_AGG_ADMIN_TOKEN)")

KeyHeader = Annotated[str | None, Header(alias=HEADER_KEY, description="Fingerprint of the signing key")]
TimestampHeader = Annotated[
    str | None, Header(alias=HEADER_TIMESTAMP, description="Unix time in seconds, e.g. 1735689600.123456")
]
SignatureHeader = Annotated[
    str | None,
    Header(alias=HEADER_SIGNATURE, description="Ed25519 over protocols.auth.request_message (method, path, timestamp, sha256 of the body)"),
]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
RoundId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="The spec's round_id")]
MemberId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _state(request: Request) -> _State:
    state: _State = request.app.state.pcf
    return state


def _signed_path(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _is_admin(state: _State, creds: HTTPAuthorizationCredentials | None) -> bool:
    if creds is None:
        return False
    expected = state.settings.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(creds.credentials.encode(), expected):
        raise Unauthorized("admin token does not match; send Authorization: Bearer <PCF_AGG_ADMIN_TOKEN>")
    return True


def _headers(key: str | None, ts: str | None, sig: str | None) -> dict[str, str | None]:
    return {HEADER_KEY: key, HEADER_TIMESTAMP: ts, HEADER_SIGNATURE: sig}


async def require_admin(
    request: Request, creds: Bearer, key: KeyHeader = None, ts: TimestampHeader = None, sig: SignatureHeader = None
) -> None:
    state = _state(request)
    if _is_admin(state, creds):
        return
    if key or ts or sig:
        raise Forbidden("member signatures are not accepted here: this action is for the association's administrators")
    raise Unauthorized("administrator action: send Authorization: Bearer <PCF_AGG_ADMIN_TOKEN>")


async def _authenticate_member(
    request: Request, headers: dict[str, str | None], *, require_approved: bool = True
) -> MemberRow:
    state = _state(request)
    body = await request.body()
    path = _signed_path(request)

    def check() -> MemberRow:
        with state.ctx.store.transaction() as tx:
            return members.authenticate_member(
                tx, request.method, path, headers, body, state.now(), state.max_age, require_approved=require_approved
            )

    return await run_in_threadpool(check)


async def require_member(
    request: Request, creds: Bearer, key: KeyHeader = None, ts: TimestampHeader = None, sig: SignatureHeader = None
) -> MemberRow:
    if not (key or ts or sig):
        if creds is not None:
            raise Forbidden("the admin token is not accepted here: this action is for members, with signed requests")
        raise Unauthorized(f"member action: sign the request ({HEADER_KEY}, {HEADER_TIMESTAMP}, {HEADER_SIGNATURE})")
    return await _authenticate_member(request, _headers(key, ts, sig))


@dataclass(frozen=True)
class Principal:
    role: Literal["admin", "member"]
    member: MemberRow | None = None


async def require_admin_or_member(
    request: Request, creds: Bearer, key: KeyHeader = None, ts: TimestampHeader = None, sig: SignatureHeader = None
) -> Principal:
    if _is_admin(_state(request), creds):
        return Principal("admin")
    if key or ts or sig:
        return Principal("member", await _authenticate_member(request, _headers(key, ts, sig)))
    raise Unauthorized("send the admin token or a signed member request")


# --------------------------------------------------------------------------------------- the routes


def _routes() -> APIRouter:
    r = APIRouter(prefix=API_PREFIX)

    @r.get("/aggregator", response_model=AggregatorInfo, tags=["public"])
    def aggregator_info(
        request: Request,
        challenge: Annotated[str | None, Query(min_length=43, max_length=43, pattern=r"^[A-Za-z0-9_-]+$",
                                               description="32 random bytes, base64url: the answer signs them")] = None,
    ) -> AggregatorInfo:
        """The aggregator's public key (verify specs, log entries and factor packages with it)."""
        state = _state(request)
        pub = identity.public_key_b64(state.ctx.key)
        signed = None
        if challenge is not None:
            signed = identity.sign(state.ctx.key, encode(Kind.AGGREGATOR_CHALLENGE, {"challenge": challenge}))
        return AggregatorInfo(public_key=pub, fingerprint=identity.fingerprint(pub),
                              public_base_url=state.settings.public_base_url, challenge_signature=signed)

    # -- members -----------------------------------------------------------------------------

    @r.post(
        "/members/enroll",
        response_model=members.MemberPublic,
        status_code=201,
        responses=error_responses(400, 401, 403, 409),
        tags=["members"],
    )
    def enroll(request: Request, body: members.EnrollmentRequest) -> members.MemberPublic:
        """Ask to join: the signature proves possession of the identity key. The member starts ``pending``."""
        state = _state(request)
        with state.ctx.store.transaction() as tx:
            return members.enroll(tx, body, state.now(), authority_public_key=state.settings.authority_public_key)

    @r.get("/members/keys", response_model=list[members.MemberKey], tags=["public"])
    def member_keys(request: Request) -> list[members.MemberKey]:
        """Every member's identity key and status, to check contribution receipts in the log."""
        with _state(request).ctx.store.transaction() as tx:
            return members.list_member_keys(tx)

    @r.get(
        "/members/me",
        response_model=members.MemberPublic,
        responses=error_responses(401, 403),
        tags=["members"],
    )
    async def member_me(
        request: Request, creds: Bearer, key: KeyHeader = None, ts: TimestampHeader = None, sig: SignatureHeader = None
    ) -> members.MemberPublic:
        """The calling member's own record, whatever its status (nodes poll it for approval)."""
        if not (key or ts or sig):
            if creds is not None:
                raise Forbidden("the admin token is not accepted here: this is a member's own record")
            raise Unauthorized(f"member action: sign the request ({HEADER_KEY}, {HEADER_TIMESTAMP}, {HEADER_SIGNATURE})")
        row = await _authenticate_member(request, _headers(key, ts, sig), require_approved=False)
        return members.MemberPublic.model_validate(row, from_attributes=True)

    @r.get(
        "/members",
        response_model=list[members.MemberPublic],
        responses=error_responses(401, 403),
        dependencies=[Depends(require_admin)],
        tags=["admin"],
    )
    def list_members(
        request: Request, status: Annotated[members.MemberStatus | None, Query()] = None
    ) -> list[members.MemberPublic]:
        """All members, optionally by status."""
        with _state(request).ctx.store.transaction() as tx:
            return members.list_members(tx, status)

    @r.post(
        "/members/{member_id}/approve",
        response_model=members.MemberPublic,
        responses=error_responses(401, 403, 404, 409, 502),
        dependencies=[Depends(require_admin)],
        tags=["admin"],
        name="approve_member",
    )
    def approve(request: Request, member_id: MemberId) -> members.MemberPublic:
        """Approve a member (a no-op when repeated); with a SuperLink configured, its SuperNode key is
        registered there first and the node id stored (502 and still pending if that fails)."""
        state = _state(request)
        return members.approve_member(state.ctx.store, member_id, state.now(), state.registrar)

    @r.post(
        "/members/{member_id}/revoke",
        response_model=members.MemberRevocation,
        responses=error_responses(401, 403, 404, 409),
        dependencies=[Depends(require_admin)],
        tags=["admin"],
        name="revoke_member",
    )
    def revoke(request: Request, member_id: MemberId) -> members.MemberRevocation:
        """Revoke a member (repeating retries unregistering); with a SuperLink configured its SuperNode is
        unregistered there too, and a failure to do so is reported without blocking the revocation."""
        state = _state(request)
        return members.revoke_member(state.ctx.store, member_id, state.now(), state.unregistrar)

    # -- rounds ------------------------------------------------------------------------------

    @r.post(
        "/rounds",
        response_model=rounds.RoundPublic,
        status_code=201,
        responses=error_responses(400, 401, 403, 409, 503),
        dependencies=[Depends(require_admin)],
        tags=["admin"],
    )
    def create_round(request: Request, spec: RoundSpec) -> rounds.RoundPublic:
        """Create a draft round from a spec; the aggregator signs it."""
        return rounds.create_round(_state(request).ctx, spec)

    @r.get(
        "/rounds",
        response_model=list[rounds.RoundPublic],
        responses=error_responses(401, 403),
        tags=["rounds"],
    )
    def list_rounds(
        request: Request,
        principal: Annotated[Principal, Depends(require_admin_or_member)],
        state: Annotated[rounds.RoundState | None, Query()] = None,
    ) -> list[rounds.RoundPublic]:
        """Rounds (members: invitations, e.g. ``?state=open``, with the signed spec; never drafts)."""
        return rounds.list_rounds(_state(request).ctx, state, include_drafts=principal.role == "admin")

    @r.get(
        "/rounds/{round_id}",
        response_model=rounds.RoundPublic,
        responses=error_responses(401, 403, 404),
        tags=["rounds"],
    )
    def round_status(
        request: Request, round_id: RoundId, principal: Annotated[Principal, Depends(require_admin_or_member)]
    ) -> rounds.RoundPublic:
        """One round's state and decision."""
        return rounds.get_round(_state(request).ctx, round_id, include_drafts=principal.role == "admin")

    def _admin_action(name: str, func: Callable[[rounds.RoundContext, str], rounds.RoundPublic], status: int, doc: str) -> None:
        def handler(request: Request, round_id: RoundId) -> rounds.RoundPublic:
            return func(_state(request).ctx, round_id)

        handler.__doc__ = doc
        r.add_api_route(
            f"/rounds/{{round_id}}/{name}",
            handler,
            methods=["POST"],
            status_code=status,
            response_model=rounds.RoundPublic,
            responses=error_responses(401, 403, 404, 409, 503),
            dependencies=[Depends(require_admin)],
            tags=["admin"],
            name=f"{name}_round",
        )

    _admin_action("open", rounds.open_round, 200, "Publish the signed spec and invite members (draft → open).")
    _admin_action(
        "run",
        rounds.run_round,
        202,
        "Close collection and aggregate (paillier: wait for custodians; secagg: start the runner).",
    )
    _admin_action("cancel", rounds.cancel_round, 200, "Abort a round that has not ended.")

    @r.post(
        "/rounds/{round_id}/contributions",
        response_model=rounds.ContributionReceipt,
        status_code=201,
        responses=error_responses(400, 401, 403, 404, 409),
        tags=["members"],
    )
    async def contribute(
        request: Request,
        round_id: RoundId,
        contribution: ContributionIn,
        member: Annotated[MemberRow, Depends(require_member)],
        ts: TimestampHeader = None,
        sig: SignatureHeader = None,
    ) -> rounds.ContributionReceipt:
        """Post a signed encrypted contribution to a ``paillier`` round; the receipt is countersigned."""
        body = await request.body()
        ctx = _state(request).ctx
        return await run_in_threadpool(
            rounds.submit_contribution, ctx, round_id, member, body, request.method, _signed_path(request), ts or "", sig or ""
        )

    @r.get(
        "/rounds/{round_id}/stage",
        response_model=rounds.StageStatus,
        responses=error_responses(401, 403, 404, 409),
        tags=["members"],
    )
    def get_stage(
        request: Request, round_id: RoundId, member: Annotated[MemberRow, Depends(require_member)]
    ) -> rounds.StageStatus:
        """The disclosure stage a ``paillier`` round waits for, its signed context and slot count (cohort members)."""
        return rounds.stage_status(_state(request).ctx, round_id, member)

    @r.post(
        "/rounds/{round_id}/stages/{stage}/contributions",
        response_model=rounds.ContributionReceipt,
        status_code=201,
        responses=error_responses(400, 401, 403, 404, 409),
        tags=["members"],
    )
    async def contribute_stage(
        request: Request,
        round_id: RoundId,
        stage: Annotated[_StageName, Path(description="The disclosure stage the round collects")],
        contribution: ContributionIn,
        member: Annotated[MemberRow, Depends(require_member)],
        ts: TimestampHeader = None,
        sig: SignatureHeader = None,
    ) -> rounds.ContributionReceipt:
        """Post a cohort member's signed encrypted contribution to the stage a ``paillier`` round collects."""
        body = await request.body()
        ctx = _state(request).ctx
        return await run_in_threadpool(
            rounds.submit_stage_contribution, ctx, round_id, stage, member, body, request.method,
            _signed_path(request), ts or "", sig or "",
        )

    @r.get(
        "/rounds/{round_id}/decryption-request",
        response_model=rounds.DecryptionRequest,
        responses=error_responses(401, 403, 404, 409),
        tags=["custodians"],
    )
    async def get_decryption_request(
        request: Request,
        round_id: RoundId,
        creds: Bearer,
        key: KeyHeader = None,
        ts: TimestampHeader = None,
        sig: SignatureHeader = None,
    ) -> rounds.DecryptionRequest:
        """The logged contributions custodians decrypt (admin token, or a request signed with a custodian key)."""
        state = _state(request)
        if not _is_admin(state, creds):
            if not (key or ts or sig):
                raise Unauthorized("custodian action: sign the request with your custodian key, or use the admin token")
            body = await request.body()
            await run_in_threadpool(
                rounds.authenticate_custodian,
                state.ctx, round_id, request.method, _signed_path(request), _headers(key, ts, sig), body, state.max_age,
            )
        return await run_in_threadpool(rounds.decryption_request, state.ctx, round_id)

    @r.post(
        "/rounds/{round_id}/partial-decryptions",
        response_model=rounds.PartialReceipt,
        status_code=201,
        responses=error_responses(400, 401, 404, 409),
        tags=["custodians"],
    )
    def post_partial(request: Request, round_id: RoundId, partial: PartialIn) -> rounds.PartialReceipt:
        """A custodian's partial decryption; authenticated by the custodian signature it carries."""
        # Re-serialised from the validated model, so lax JSON (e.g. ``1.0`` for an index) is normalised.
        return rounds.submit_partial(_state(request).ctx, round_id, partial.model_dump_json().encode())

    @r.post(
        "/rounds/{round_id}/deliveries",
        response_model=DeliveryReceipt,
        responses=error_responses(400, 401, 403, 404, 502),
        dependencies=[Depends(require_admin)],
        tags=["admin"],
    )
    def deliver(request: Request, round_id: RoundId, body: DeliveryIn) -> DeliveryReceipt:
        """Deliver the round's published factor package (retries, idempotent by factor id and version)."""
        state = _state(request)
        url = body.url
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise BadRequest(f"receiver URL {url[:200]!r}: accepted are absolute http:// and https:// URLs")
        with state.ctx.store.transaction() as tx:
            tx.get_round(round_id)
            row = tx.factor_for_round(round_id)
        if row is None:
            raise NotFound(f"round {round_id!r} published no factor; only published rounds are delivered")
        package = sign_package(
            state.ctx.key, row.factor_id, row.version, json.loads(row.document), row.document_hash, row.log_seq
        )
        return publish_to(url, package, store=state.ctx.store)

    # -- transparency log --------------------------------------------------------------------

    @r.get("/log", response_model=translog.LogPage, tags=["public"])
    def read_log(
        request: Request,
        from_seq: Annotated[int, Query(ge=1, le=2**31 - 1)] = 1,
        limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    ) -> translog.LogPage:
        """The transparency log from ``from_seq``, at most ``limit`` entries."""
        state = _state(request)
        with state.ctx.store.transaction() as tx:
            rows = tx.list_log(from_seq, limit + 1)
        entries = [translog.row_to_entry(x) for x in rows[:limit]]
        return translog.LogPage(
            aggregator_public_key=identity.public_key_b64(state.ctx.key),
            entries=entries,
            next_seq=rows[limit].seq if len(rows) > limit else None,
        )

    return r


# ---------------------------------------------------------------------------------------- transport

_SECRET_PATHS = frozenset({"/auth/token"})
"""Paths whose requests carry a secret outside the ``Authorization`` header (PACT ``client_secret`` in the form)."""


class RequireTlsForSecrets:
    """ASGI middleware: the admin token and PACT credentials are accepted only on TLS connections.

    A request that did not arrive over TLS (ASGI ``scope["scheme"] != "https"``) and carries an
    ``Authorization`` header, or goes to a path in :data:`_SECRET_PATHS`, is answered 403
    ``insecure-transport`` before any route sees it. The secret has crossed the network in clear by
    then: the answer says to rotate it; what the refusal guarantees is that a plain-HTTP deployment
    can never be used with those secrets by mistake. (Clients refuse earlier: ``pcf agg`` sends the
    token to ``https://`` URLs only.)
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("scheme") != "https":
            names = {name.lower() for name, _ in scope.get("headers", [])}
            if b"authorization" in names or scope.get("path") in _SECRET_PATHS:
                error = InsecureTransport(
                    "credentials over plain HTTP are refused: the admin token and PACT client credentials are "
                    "accepted only over HTTPS (serve with PCF_AGG_TLS_CERTFILE / PCF_AGG_TLS_KEYFILE and use an "
                    "https:// URL); a secret sent here crossed the network in clear, so rotate it"
                )
                response = JSONResponse(error.body().model_dump(), status_code=error.status_code)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------------------------------ factory


def _mount_optional(app: FastAPI, repo: StoreFactorRepository, settings: AggregatorSettings) -> None:
    for name in _OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                log.info("%s is not present; its routes are not mounted", name)
                continue
            raise
        app.include_router(module.router_factory(repo, settings))


async def _on_aggregator_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AggregatorError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse(exc.body().model_dump(), status_code=exc.status_code, headers=headers)


def _allowed_methods(request: Request, allow: str | None) -> str:
    """Every method the request's path accepts: Starlette's 405 names only those of the first route
    on the path (``POST`` for ``/api/v1/rounds``), so the methods of the schema's paths are added."""
    methods = {m.strip() for m in (allow or "").split(",") if m.strip()}
    for template, operations in request.app.openapi()["paths"].items():
        regex, _, _ = compile_path(template)
        if regex.match(request.scope["path"]):
            methods |= {m.upper() for m in operations}
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return ", ".join(sorted(methods))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    # The framework's own errors (unknown path, wrong method, unparsable body) get the same body shape.
    assert isinstance(exc, StarletteHTTPException)
    body = ErrorBody(error=f"http-{exc.status_code}", detail=str(exc.detail))
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(exc.headers or {}), "Allow": _allowed_methods(request, (exc.headers or {}).get("Allow"))}
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=headers)


def create_app(
    settings: AggregatorSettings,
    store: Store | None = None,
    runner: rounds.SecAggRunner | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    paillier_public_key: paillier.SplitPublicKey | None = None,
    registrar: members.SuperNodeRegistrar | None = None,
    unregistrar: members.SuperNodeUnregistrar | None = None,
) -> FastAPI:
    """Build the aggregator service.

    Parameters
    ----------
    settings
        The deployment's settings.
    store
        The store; default ``open_store(settings.database_url)``.
    runner
        ``run_secagg(spec, roster) -> (summed_ints, n)`` for ``secagg`` rounds; default
        :class:`aggregator.flower_runner.FlowerSecAggRunner` when ``settings.superlink_address``
        is set; without any, running such a round answers 503.
    clock
        Time source (tests); default UTC now.
    paillier_public_key
        The custodians' key; default read from ``settings.paillier_public_key_path`` if set.
    registrar
        Registers an approved member's SuperNode key and returns its node id; default
        ``flwr supernode register`` against ``settings.superlink_address`` when set. With a
        registrar, opening a ``secagg`` round fixes a signed roster of node ids.

    Returns
    -------
    FastAPI
        On start-up it resumes or aborts rounds interrupted by a restart.
    """
    store = store or open_store(settings.database_url, auto_upgrade=settings.db_auto_upgrade)
    key = load_or_create_identity(settings.identity_key_file)
    if paillier_public_key is None and settings.paillier_public_key_path is not None:
        from aggregator.round_paillier import read_public_key

        paillier_public_key = read_public_key(settings.paillier_public_key_path)
    if settings.superlink_address is not None:
        from aggregator import flower_runner

        registrar = registrar or flower_runner.supernode_registrar(settings)
        unregistrar = unregistrar or flower_runner.supernode_unregistrar(settings)
        runner = runner or flower_runner.FlowerSecAggRunner(settings)
    ctx = rounds.RoundContext(
        store=store,
        key=key,
        paillier_public_key=paillier_public_key,
        runner=runner,
        flower_roster=registrar is not None,
        clock=clock or utcnow,
        authority_public_key=settings.authority_public_key,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resumed = await run_in_threadpool(rounds.resume_rounds, ctx)
        for round_id, what in resumed.items():
            log.warning("round %s after restart: %s", round_id, what)
        yield

    app = FastAPI(
        title="pcf-dataspace aggregator",
        version="1",
        description=__doc__ or "",
        lifespan=lifespan,
    )
    app.state.pcf = _State(
        settings=settings, ctx=ctx, max_age=timedelta(seconds=settings.request_max_age_seconds), registrar=registrar,
        unregistrar=unregistrar,
    )
    app.add_exception_handler(AggregatorError, _on_aggregator_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_middleware(RequireTlsForSecrets)

    @app.get("/health", response_model=Health, tags=["public"])
    def health() -> Health:
        with store.transaction() as tx:
            tx.last_log_entry()
        return Health(status="ok")

    app.include_router(_routes())
    _mount_optional(app, StoreFactorRepository(store), settings)
    return app


def app_from_env() -> FastAPI:
    """``uvicorn aggregator.app:app_from_env --factory``: settings from ``PCF_AGG_*``.

    With ``PCF_AGG_SUPERLINK_ADDRESS`` set, approvals register SuperNodes and ``secagg`` rounds run
    over that SuperLink; without it, ``secagg`` rounds answer 503 when run.
    """
    logging.basicConfig(level=os.environ.get("PCF_AGG_LOG_LEVEL", "INFO"))
    return create_app(AggregatorSettings())  # type: ignore[call-arg]

