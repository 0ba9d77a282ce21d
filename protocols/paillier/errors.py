"""Errors of the ``paillier`` protocol.

Exception tree::

    ProtocolError (protocols.errors)
    └── PaillierError
        ├── LayoutError           values, participants or key size outside the packing layout
        ├── MalformedMessage      a wire message lacks a field or holds a wrong type
        ├── ContributionRejected  the aggregator refuses a contribution (signature, round, replay...)
        ├── CustodianRefused      a custodian refuses to release a partial decryption
        ├── CombineFailed         partials are incomplete, inconsistent, or decode out of range
        └── KeyShareError         a sealed key share is not one, or a ceremony argument is refused
            └── ShareUnlockFailed wrong password or an edited share (opaque on purpose)
"""

from __future__ import annotations

from protocols.errors import ProtocolError

__all__ = [
    "CombineFailed",
    "ContributionRejected",
    "CustodianRefused",
    "KeyShareError",
    "LayoutError",
    "MalformedMessage",
    "PaillierError",
    "ShareUnlockFailed",
]


class PaillierError(ProtocolError):
    """Base class of every error raised by the ``paillier`` protocol."""


class LayoutError(PaillierError, ValueError):
    """Values, participant count or key size do not fit the packing layout."""


class MalformedMessage(PaillierError, ValueError):
    """A wire message lacks a field or holds a value of the wrong type."""


class ContributionRejected(PaillierError):
    """The aggregator refuses a contribution; the message says which and why."""


class CustodianRefused(PaillierError):
    """A custodian refuses to release a partial decryption; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CombineFailed(PaillierError):
    """Partial decryptions are incomplete, inconsistent, or decode outside the slot ranges."""


class KeyShareError(PaillierError):
    """A sealed key share cannot be read (not a share, wrong format), or a ceremony argument is refused."""


class ShareUnlockFailed(KeyShareError):
    """The share does not open: wrong password or an edited share. Opaque on purpose."""
