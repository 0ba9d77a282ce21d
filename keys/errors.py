"""Errors of the keys package (identities, signatures, key files).

Exception tree::

    KeysError
    ├── IdentityError      a key file or an encoded public key cannot be read (also a ValueError)
    ├── InvalidSignature   a signature does not verify; deliberately opaque: it never says whether
    │                      the key, the encoding or the signed bytes were wrong
    └── KeyFileError       a key file would be overwritten, or cannot be written

``protocols.errors`` re-exports ``IdentityError`` and ``InvalidSignature`` (the same classes, also
registered as ``ProtocolError``), so ``except protocols.errors.InvalidSignature`` catches what
``keys.identity.verify`` raises.
"""

from __future__ import annotations

__all__ = ["IdentityError", "InvalidSignature", "KeyFileError", "KeysError"]


class KeysError(Exception):
    """Base class of the keys package's errors."""


class IdentityError(KeysError, ValueError):
    """A private-key file or an encoded public key cannot be read or has the wrong type or mode."""


class InvalidSignature(KeysError):
    """A signature does not verify. Opaque on purpose: the message never says why."""

    def __init__(self, message: str = "signature does not verify"):
        super().__init__(message)


class KeyFileError(KeysError, OSError):
    """A key file already exists and ``overwrite`` was not given, or its directory is missing."""
