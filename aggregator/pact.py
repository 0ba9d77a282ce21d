"""The PACT v3 host-system API over the published factors: ``/auth/token``, ``/3/footprints``, ``/3/events``.

* ``POST /auth/token``: OAuth2 client credentials (RFC 6749 section 4.4) with HTTP Basic client
  authentication (credentials in the form body are accepted too). Errors answer RFC 6749 section
  5.2 bodies: a wrong client is ``401 {"error": "invalid_client"}``.
* Access tokens are stateless: ``pct2.<payload>.<HMAC-SHA256>``, the MAC over the canonical
  encoding of the payload (``Kind.PACT_TOKEN``), the key derived from the client secret (rotating
  the secret revokes every token), valid ``pact_token_lifetime_seconds`` (default 3600). An
  expired token answers ``401 TokenExpired``; a missing or malformed one ``400 BadRequest`` (as
  the PACT conformance tests expect); a token of a client that is no longer configured ``403 AccessDenied``.
* ``GET /3/footprints``: every version of every factor (the newest ``Active``, older ones
  ``Deprecated``), filtered by ``productId``, ``companyId``, ``geography``, ``classification``,
  ``validOn``, ``validAfter``, ``validBefore``, ``status`` (parameter names with a leading ``$``
  are accepted too). Repeated values of one filter are alternatives (OR); different filters must
  all hold (AND); string matches are case-insensitive; a country contains its subdivisions.
  ``limit`` (>= 1) caps a page; when more remain the answer carries an absolute
  ``Link: <...?offset=N...>; rel="next"`` on the host the request named.
* ``GET /3/footprints/{id}``: one footprint; unknown ids are ``404 NotFound``.
* ``POST /3/events``: CloudEvents (structured JSON) of the four v3 event types are validated and
  handed to ``on_event``; accepted events answer ``200`` with an empty body, malformed ones
  ``400 BadRequest``.

Invalid requests answer ``400 {"code": "BadRequest", ...}``, never FastAPI's 422: the router's
route class turns request validation errors and :class:`PactError` into PACT error bodies, so
the app needs no exception handler for these routes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import OAuth2
from pydantic import BaseModel, TypeAdapter, ValidationError

from aggregator.repository import FactorRepository
from protocols.canonical import Kind, canonical_json, encode
from protocols.factor import PublishedFactor
from protocols.pact import (
    EVENT_PUBLISHED,
    EVENT_REQUEST_CREATED,
    EVENT_REQUEST_FULFILLED,
    EVENT_REQUEST_REJECTED,
    EXTENSION_SCHEMA,
    AuthError,
    CloudEvent,
    Error,
    ErrorCode,
    FootprintFilter,
    ListFootprintsResponse,
    ProductFootprint,
    ProductFootprintResponse,
    PublishedEventData,
    RequestCreatedEventData,
    RequestFulfilledEventData,
    RequestRejectedEventData,
    TokenResponse,
    UtcDateTime,
    footprint_matches,
    parse_event,
    product_footprint,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "EventHandler",
    "PactError",
    "TokenExpired",
    "TokenInvalid",
    "all_footprints",
    "issue_token",
    "parse_list_query",
    "router_factory",
    "verify_token",
]

DEFAULT_PAGE_SIZE = 100
"""Footprints per page when the request gives no ``limit`` (``pact_page_size`` overrides it)."""

_TOKEN_PREFIX = "pct2"
_MAX_TOKEN_BODY = 1024
_KEY_CONTEXT = b"pcf-dataspace/pact-token/v1"

EventHandler = Callable[[CloudEvent, BaseModel], None]
"""Called with every accepted event and its typed ``data``; raising refuses the event (400)."""


class PactError(Exception):
    """A PACT error response: HTTP status, :data:`~protocols.pact.ErrorCode` and message."""

    def __init__(self, status_code: int, code: ErrorCode, message: str):
        self.status_code = status_code
        self.code = code
        self.message = message
        super().__init__(message)

    def response(self) -> JSONResponse:
        return JSONResponse(
            status_code=self.status_code, content=Error(code=self.code, message=self.message).model_dump()
        )


class TokenInvalid(Exception):
    """An access token that is not one of ours, or was altered. Opaque on purpose."""


class TokenExpired(Exception):
    """An access token that was ours but is past its expiry."""


# ------------------------------------------------------------------------------------------ tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_key(client_secret: str) -> bytes:
    """The token MAC key of a client secret (HMAC-SHA256 under a fixed context)."""
    return hmac.new(client_secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()


def issue_token(client_id: str, key: bytes, *, now: float, lifetime: int) -> str:
    """A bearer token for ``client_id`` valid from ``now`` for ``lifetime`` seconds."""
    payload = {"sub": client_id, "iat": int(now), "exp": int(now) + lifetime, "jti": secrets.token_urlsafe(9)}
    return f"{_TOKEN_PREFIX}.{_b64(canonical_json(payload))}.{_b64(_token_mac(key, payload))}"


def _token_mac(key: bytes, payload: dict[str, Any]) -> bytes:
    """HMAC-SHA256 over the canonical encoding of the token payload (``Kind.PACT_TOKEN``)."""
    return hmac.new(key, encode(Kind.PACT_TOKEN, payload), hashlib.sha256).digest()


def verify_token(token: str, key: bytes, *, now: float) -> str:
    """The client id a token was issued to.

    Raises
    ------
    TokenInvalid
        Not a token of this key (malformed, altered, other key).
    TokenExpired
        A genuine token at or after its expiry.
    """
    try:
        prefix, body, mac = token.split(".")
        if prefix != _TOKEN_PREFIX or len(body) > _MAX_TOKEN_BODY:
            raise ValueError
        raw = _unb64(body)
        payload = json.loads(raw)
        # The MAC covers the canonical encoding, so the body must be exactly that document's canonical form.
        if not isinstance(payload, dict) or canonical_json(payload) != raw:
            raise ValueError
        if not hmac.compare_digest(_token_mac(key, payload), _unb64(mac)):
            raise ValueError
        sub, exp = str(payload["sub"]), int(payload["exp"])
    except (ValueError, KeyError, TypeError):
        raise TokenInvalid() from None
    if now >= exp:
        raise TokenExpired()
    return sub


# --------------------------------------------------------------------------------------- footprints


def all_footprints(
    factors: list[PublishedFactor],
    *,
    company_name: str,
    company_ids: list[str],
    extension_schema: str = EXTENSION_SCHEMA,
    cache: dict[tuple[str, str, bool], ProductFootprint] | None = None,
) -> list[ProductFootprint]:
    """Every version of every factor as a ProductFootprint, ordered by factor id then version.

    The newest version of a factor is ``Active``, older ones ``Deprecated``; each lists the ids of
    the versions before it in ``precedingPfIds``. ``cache`` (keyed by factor id, version and
    whether it is the newest) avoids rebuilding immutable footprints on every request.
    """
    by_id: dict[str, list[PublishedFactor]] = {}
    for f in factors:
        by_id.setdefault(f.factor_id, []).append(f)
    out: list[ProductFootprint] = []
    for fid in sorted(by_id):
        versions = sorted(by_id[fid], key=lambda f: f.revision)
        for i, f in enumerate(versions):
            latest = i == len(versions) - 1
            key = (fid, f.version, latest)
            pf = cache.get(key) if cache is not None else None
            if pf is None:
                pf = product_footprint(
                    f,
                    company_name=company_name,
                    company_ids=company_ids,
                    status="Active" if latest else "Deprecated",
                    preceding_versions=[v.version for v in versions[:i]],
                    extension_schema=extension_schema,
                )
                if cache is not None:
                    cache[key] = pf
            out.append(pf)
    return out


_LIST_FILTERS = ("productId", "companyId", "geography", "classification")
_DATE_FILTERS = ("validOn", "validAfter", "validBefore")
_SCALARS = (*_DATE_FILTERS, "status", "limit", "offset")
_DATETIME = TypeAdapter(UtcDateTime)


def _parse_when(name: str, text: str) -> datetime:
    try:
        if len(text) == 10:  # a bare date means its first instant, UTC
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        return _DATETIME.validate_python(text)
    except (ValueError, ValidationError):
        raise PactError(
            400, "BadRequest", f"{name}={text!r} is not a date-time; accepted: RFC 3339 like 2025-01-31T00:00:00Z"
        ) from None


_MAX_COUNT = 2**31 - 1
"""Largest ``limit`` and ``offset`` (a bound keeps int() away from thousands of digits)."""


def _parse_count(name: str, text: str, minimum: int) -> int:
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > len(str(_MAX_COUNT)):
        value = None
    else:
        value = int(digits)
    if value is None or not minimum <= value <= _MAX_COUNT:
        raise PactError(400, "BadRequest", f"{name}={text[:40]!r}: accepted: an integer from {minimum} to {_MAX_COUNT}")
    return value


def parse_list_query(items: list[tuple[str, str]]) -> tuple[FootprintFilter, int | None, int]:
    """The filter, limit and offset of a ListFootprints query string (as ``(name, value)`` pairs).

    A leading ``$`` on a name is ignored; ``x-...`` extension parameters and unknown names are
    ignored; list filters may repeat; other parameters may appear once.

    Raises
    ------
    PactError
        400 BadRequest for a malformed date, limit, offset or status, or a repeated scalar.
    """
    lists: dict[str, list[str]] = {}
    scalars: dict[str, str] = {}
    for raw_name, value in items:
        name = raw_name.lstrip("$")
        if name in _LIST_FILTERS:
            lists.setdefault(name, []).append(value)
        elif name in _SCALARS:
            if name in scalars:
                raise PactError(400, "BadRequest", f"parameter {name!r} given more than once; it takes one value")
            scalars[name] = value
    status = scalars.get("status")
    if status is not None and status.lower() not in ("active", "deprecated"):
        raise PactError(400, "BadRequest", f"status={status!r}: accepted: Active or Deprecated")
    criteria: dict[str, Any] = {k: v for k, v in lists.items()}
    for name in _DATE_FILTERS:
        if name in scalars:
            criteria[name] = _parse_when(name, scalars[name])
    if status is not None:
        criteria["status"] = status
    limit = _parse_count("limit", scalars["limit"], 1) if "limit" in scalars else None
    offset = _parse_count("offset", scalars["offset"], 0) if "offset" in scalars else 0
    return FootprintFilter.model_validate(criteria), limit, offset


# ------------------------------------------------------------------------------------------ router


class _PactRoute(APIRoute):
    """Turns request validation errors and :class:`PactError` into PACT error bodies (400, not 422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()))
                return PactError(400, "BadRequest", f"{where}: {first.get('msg', 'invalid request')}").response()
            except PactError as exc:
                return exc.response()

        return route


def _setting(settings: object, name: str, default: Any) -> Any:
    value = getattr(settings, name, default)
    return default if value is None else value


def _secret(settings: object) -> str:
    value = getattr(settings, "pact_client_secret", None)
    if value is None:
        raise ValueError("settings.pact_client_secret is not set; the PACT API needs client credentials")
    raw = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    if not raw:
        raise ValueError("settings.pact_client_secret is empty")
    return str(raw)


def _auth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="pact"'
    body = AuthError(error=error, error_description=description)  # type: ignore[arg-type]
    return JSONResponse(status_code=status, content=body.model_dump(exclude_none=True), headers=headers)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, sep, client_secret = decoded.partition(":")
    return (client_id, client_secret) if sep else None


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "BadRequest: malformed request or token"},
    401: {"model": Error, "description": "TokenExpired"},
    403: {"model": Error, "description": "AccessDenied"},
}

_LIST_PARAMETERS: list[dict[str, Any]] = [
    *(
        {
            "name": name,
            "in": "query",
            "required": False,
            "explode": True,
            "description": "One or more values (repeat the parameter): OR within, AND across filters; any case.",
            "schema": {"type": "array", "items": {"type": "string"}},
        }
        for name in _LIST_FILTERS
    ),
    *(
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": "RFC 3339 date-time, e.g. 2025-01-31T00:00:00Z (a bare date 2025-01-31 is its first instant, UTC).",
            "schema": {"type": "string", "format": "date-time"},
        }
        for name in _DATE_FILTERS
    ),
    {
        "name": "status",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["Active", "Deprecated"]},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": _MAX_COUNT},
    },
    {
        "name": "offset",
        "in": "query",
        "required": False,
        "description": "Pagination cursor; use the Link header rather than setting it by hand.",
        "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_COUNT},
    },
]

_GET_PARAMETERS: list[dict[str, Any]] = [
    # Declared here rather than as a function parameter: FastAPI would then also document a 422
    # answer, which these routes never give (see _PactRoute).
    {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}},
]

_EVENT_DATA_MODELS: dict[str, type[BaseModel]] = {
    EVENT_PUBLISHED: PublishedEventData,
    EVENT_REQUEST_CREATED: RequestCreatedEventData,
    EVENT_REQUEST_FULFILLED: RequestFulfilledEventData,
    EVENT_REQUEST_REJECTED: RequestRejectedEventData,
}


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    # The request body schema lives inside the operation, where a local "#/$defs/..." would not
    # resolve; the event data models are small and not recursive, so their definitions are inlined.
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


def _event_schema() -> dict[str, Any]:
    """The body of Action Events: a CloudEvent whose ``data`` is the one its ``type`` names."""
    envelope = CloudEvent.model_json_schema()
    variants = []
    for event_type, model in _EVENT_DATA_MODELS.items():
        data = model.model_json_schema()
        properties = {
            **envelope["properties"],
            "type": {"type": "string", "const": event_type},
            "data": _inline_refs(data, data.get("$defs", {})),
        }
        variants.append({**envelope, "title": event_type.split(".")[-2], "properties": properties})
    return {"oneOf": variants}


def router_factory(
    repo: FactorRepository,
    settings: object,
    *,
    on_event: EventHandler | None = None,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """The PACT v3 router over ``repo``.

    Parameters
    ----------
    repo
        The published factors.
    settings
        Any object with ``pact_client_id`` and ``pact_client_secret`` (``str`` or ``SecretStr``);
        optional ``pact_token_lifetime_seconds`` (3600), ``pact_page_size`` (100),
        ``pact_company_name``, ``pact_company_ids`` (URNs) and ``pact_extension_schema``.
    on_event
        Receives every accepted event (e.g. to queue an answer to a RequestCreatedEvent).
    clock
        Seconds since the epoch; tests pass a fixed clock.
    """
    client_id = str(_setting(settings, "pact_client_id", "pcf-aggregator"))
    secret = _secret(settings)
    key = token_key(secret)
    lifetime = int(_setting(settings, "pact_token_lifetime_seconds", 3600))
    page_size = int(_setting(settings, "pact_page_size", DEFAULT_PAGE_SIZE))
    company_name = str(_setting(settings, "pact_company_name", "Industry association (pcf-dataspace aggregator)"))
    company_ids = list(_setting(settings, "pact_company_ids", [f"urn:pcf-dataspace:aggregator:{client_id}"]))
    extension_schema = str(_setting(settings, "pact_extension_schema", EXTENSION_SCHEMA))
    cache: dict[tuple[str, str, bool], ProductFootprint] = {}
    oauth2 = OAuth2(
        flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl="/auth/token")),
        scheme_name="BearerAuth",
        auto_error=False,
    )
    router = APIRouter(route_class=_PactRoute, tags=["pact"])

    def authenticate(authorization: str | None) -> str:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise PactError(
                400, "BadRequest", "Invalid token provided: send 'Authorization: Bearer <token>' from /auth/token"
            )
        try:
            sub = verify_token(authorization[7:].strip(), key, now=clock())
        except TokenExpired:
            raise PactError(
                401, "TokenExpired", "The specified access token has expired; request a new one at /auth/token"
            ) from None
        except TokenInvalid:
            raise PactError(400, "BadRequest", "Invalid token provided") from None
        if not hmac.compare_digest(sub.encode(), client_id.encode()):
            raise PactError(403, "AccessDenied", "Access denied: the token's client is not authorised")
        return sub

    def footprints() -> list[ProductFootprint]:
        return all_footprints(
            repo.list_factors(latest_only=False),
            company_name=company_name,
            company_ids=company_ids,
            extension_schema=extension_schema,
            cache=cache,
        )

    @router.post(
        "/auth/token",
        response_model=TokenResponse,
        responses={400: {"model": AuthError}, 401: {"model": AuthError}},
        summary="Action Authenticate (OAuth2 client credentials)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["grant_type"],
                            "properties": {
                                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                                "scope": {"type": "string"},
                            },
                        }
                    }
                },
            }
        },
    )
    async def authenticate_client(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        creds = _basic_credentials(request.headers.get("authorization"))
        if creds is None and "client_id" in form:
            creds = (form.get("client_id", ""), form.get("client_secret", ""))
        if creds is None:
            return _auth_error(
                401, "invalid_client", "Client authentication failed: send HTTP Basic client credentials"
            )
        good_id = hmac.compare_digest(creds[0].encode(), client_id.encode())
        good_secret = hmac.compare_digest(creds[1].encode(), secret.encode())
        if not (good_id and good_secret):
            return _auth_error(401, "invalid_client", "Client authentication failed")
        grant = form.get("grant_type")
        if grant is None:
            return _auth_error(400, "invalid_request", "grant_type is missing; accepted: client_credentials")
        if grant != "client_credentials":
            return _auth_error(400, "unsupported_grant_type", f"grant_type {grant!r}; accepted: client_credentials")
        token = issue_token(client_id, key, now=clock(), lifetime=lifetime)
        body_out = TokenResponse(access_token=token, expires_in=lifetime, scope=form.get("scope") or None)
        return JSONResponse(
            content=body_out.model_dump(exclude_none=True), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
        )

    @router.get(
        "/3/footprints",
        response_model=ListFootprintsResponse,
        response_model_exclude_none=True,
        responses={
            200: {
                "headers": {
                    "Link": {"description": 'Next page: <absolute URL>; rel="next"', "schema": {"type": "string"}}
                }
            },
            **_ERROR_RESPONSES,
        },
        summary="Action ListFootprints",
        openapi_extra={"parameters": _LIST_PARAMETERS},
    )
    def list_footprints(request: Request, authorization: str | None = Security(oauth2)) -> Response:
        authenticate(authorization)
        criteria, limit, offset = parse_list_query(request.query_params.multi_items())
        found = [pf for pf in footprints() if footprint_matches(pf, criteria)]
        size = min(limit, page_size) if limit is not None else page_size
        page = found[offset : offset + size]
        headers: dict[str, str] = {}
        if offset + size < len(found):
            # Absolute, on the host the request named (request.url is built from the Host header).
            kept = [(k, v) for k, v in request.query_params.multi_items() if k.lstrip("$") != "offset"]
            query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in [*kept, ("offset", str(offset + size))])
            headers["Link"] = f'<{request.url.replace(query=query)}>; rel="next"'
        content = {"data": [pf.model_dump(mode="json", exclude_none=True) for pf in page]}
        return JSONResponse(content=content, headers=headers)

    @router.get(
        "/3/footprints/{id}",
        response_model=ProductFootprintResponse,
        response_model_exclude_none=True,
        responses={**_ERROR_RESPONSES, 404: {"model": Error, "description": "NotFound"}},
        summary="Action GetFootprint",
        openapi_extra={"parameters": _GET_PARAMETERS},
    )
    def get_footprint(request: Request, authorization: str | None = Security(oauth2)) -> Response:
        authenticate(authorization)
        asked: str = request.path_params["id"]
        wanted = asked.strip().lower()
        for pf in footprints():
            if str(pf.id) == wanted:
                return JSONResponse(content={"data": pf.model_dump(mode="json", exclude_none=True)})
        raise PactError(404, "NotFound", f"The specified footprint {asked[:80]!r} does not exist")

    @router.post(
        "/3/events",
        status_code=200,
        response_class=Response,
        responses={200: {"description": "Event accepted (empty body)"}, **_ERROR_RESPONSES},
        summary="Action Events",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/cloudevents+json": {"schema": _event_schema()}},
            }
        },
    )
    async def events(request: Request, authorization: str | None = Security(oauth2)) -> Response:
        authenticate(authorization)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise PactError(
                400, "BadRequest", "the body is not JSON; accepted: a CloudEvent in structured JSON mode"
            ) from None
        try:
            event, data = parse_event(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise PactError(400, "BadRequest", f"malformed event: {problems}") from None
        except ValueError as exc:
            raise PactError(400, "BadRequest", str(exc)) from None
        if on_event is not None:
            try:
                on_event(event, data)
            except ValueError as exc:
                raise PactError(400, "BadRequest", f"event {event.id!r} not accepted: {exc}") from None
        return Response(status_code=200)

    return router


def _quote(text: str) -> str:
    return quote(text, safe=":-._~$")
