"""Errors of the custodian role.

Exception tree::

    protocols.paillier.KeyShareError
    ├── ShareUnlockFailed    (protocols.paillier) wrong password or an edited share; opaque on purpose
    └── CustodianKeyError    a share, ledger or public-key file cannot be written or read,
                             or a ceremony argument is refused

A custodian's refusal to decrypt is ``protocols.paillier.CustodianRefused``; a malformed request
is ``protocols.paillier.MalformedMessage``.
"""

from __future__ import annotations

from protocols.paillier import KeyShareError, ShareUnlockFailed

__all__ = ["CustodianKeyError", "ShareUnlockFailed"]


class CustodianKeyError(KeyShareError):
    """A share, ledger or public-key file cannot be written or read, or a ceremony argument is refused."""
