"""Errors of the aggregator service, each mapped to one HTTP status and a JSON body.

Exception tree::

    AggregatorError                       500  base class
    ├── BadRequest                        400  a well-formed request the service cannot accept
    │   └── SpecRejected                  400  a round spec failed validation
    ├── Unauthorized                      401  no credentials, or credentials that do not verify
    │   ├── StaleRequest                  401  the signed timestamp is outside the accepted window
    │   └── ReplayedRequest               401  the same signed request was already seen
    ├── Forbidden                         403  authenticated, but not in the role this action needs
    │   └── InsecureTransport             403  the admin token or PACT credentials arrived over plain HTTP
    ├── NotFound                          404  no such member, round, factor or log entry
    ├── Conflict                          409  the request clashes with the current state
    │   ├── InvalidTransition             409  a round cannot move from its state to the one asked
    │   ├── DuplicateContribution         409  this member already contributed to this round
    │   └── WindowClosed                  409  the round's contribution window is over
    ├── Unavailable                       503  a component the action needs is not configured
    ├── DeliveryFailed                    502  the receiver did not accept a factor package
    ├── RegistrationFailed                502  the SuperLink did not register a member's SuperNode key
    │   └── UnregistrationFailed          502  the SuperLink did not unregister a revoked member's SuperNode
    └── VerificationFailed                -    a published factor does not check out (``verify``)
"""

from __future__ import annotations

from pydantic import BaseModel

__all__ = [
    "AggregatorError",
    "BadRequest",
    "Conflict",
    "DeliveryFailed",
    "DuplicateContribution",
    "ErrorBody",
    "Forbidden",
    "InsecureTransport",
    "InvalidTransition",
    "NotFound",
    "RegistrationFailed",
    "ReplayedRequest",
    "SpecRejected",
    "StaleRequest",
    "Unauthorized",
    "Unavailable",
    "UnregistrationFailed",
    "VerificationFailed",
    "WindowClosed",
    "error_responses",
]


class ErrorBody(BaseModel):
    """The JSON body of every error the service returns (besides FastAPI's 422 validation body)."""

    error: str
    """Stable machine-readable code, e.g. ``invalid-transition``."""
    detail: str
    """What was wrong, with the offending value, and what would be accepted."""


class AggregatorError(Exception):
    """Base class; ``status_code`` and ``code`` drive the HTTP mapping."""

    status_code = 500
    code = "internal-error"

    def __init__(self, detail: str):
        self.detail = detail
        super().__init__(detail)

    def body(self) -> ErrorBody:
        return ErrorBody(error=self.code, detail=self.detail)


class BadRequest(AggregatorError):
    status_code = 400
    code = "bad-request"


class SpecRejected(BadRequest):
    code = "spec-rejected"


class Unauthorized(AggregatorError):
    status_code = 401
    code = "unauthorized"


class StaleRequest(Unauthorized):
    code = "stale-request"


class ReplayedRequest(Unauthorized):
    code = "replayed-request"


class Forbidden(AggregatorError):
    status_code = 403
    code = "forbidden"


class InsecureTransport(Forbidden):
    code = "insecure-transport"


class NotFound(AggregatorError):
    status_code = 404
    code = "not-found"


class Conflict(AggregatorError):
    status_code = 409
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid-transition"


class DuplicateContribution(Conflict):
    code = "duplicate-contribution"


class WindowClosed(Conflict):
    code = "window-closed"


class Unavailable(AggregatorError):
    status_code = 503
    code = "unavailable"


class DeliveryFailed(AggregatorError):
    status_code = 502
    code = "delivery-failed"
    receipt: object | None = None
    """The stored failed-delivery receipt, when there is one."""


class RegistrationFailed(AggregatorError):
    status_code = 502
    code = "registration-failed"


class UnregistrationFailed(RegistrationFailed):
    """Revocation reports it rather than raising it: a revocation never waits for the SuperLink."""

    code = "unregistration-failed"


class VerificationFailed(AggregatorError):
    code = "verification-failed"


_DESCRIPTIONS = {
    400: "Request not acceptable",
    401: "Missing or invalid credentials",
    403: "Credentials of a role not allowed here",
    404: "Not found",
    409: "Conflicts with the current state",
    502: "An upstream service (delivery receiver, SuperLink) did not accept the request",
    503: "A required component is not configured",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses=`` entries declaring :class:`ErrorBody` for the given status codes.

    Parameters
    ----------
    codes
        HTTP status codes the route can answer with an :class:`AggregatorError`.

    Returns
    -------
    dict
        Mapping suitable for FastAPI's ``responses`` argument.
    """
    return {c: {"model": ErrorBody, "description": _DESCRIPTIONS.get(c, "Error")} for c in codes}
