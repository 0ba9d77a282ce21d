"""Errors of the membership authority.

Exception tree::

    AuthorityError
    ├── NotCertifiable     the firm's code, names or key cannot be certified (a wrong check digit...)
    ├── AlreadyCertified   the code holds a valid certificate for another key (revoke it or --replace)
    └── UnknownSerial      no certificate with that serial
"""

from __future__ import annotations

__all__ = ["AlreadyCertified", "AuthorityError", "NotCertifiable", "UnknownSerial"]


class AuthorityError(Exception):
    """Base of the authority's errors; the message says what was wrong and what is accepted."""


class NotCertifiable(AuthorityError):
    """The USCC, a legal name or the identity key is not acceptable."""


class AlreadyCertified(AuthorityError):
    """A current certificate already names this USCC: one firm, one member identity."""


class UnknownSerial(AuthorityError):
    """No certificate with this serial was issued by this authority."""
