"""Errors of registry operations, one class per answer a caller can act on.

Each front end maps these onto its own terms in one table (SNMS status
codes, Handle response codes, HTTP statuses).
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class; ``str(error)`` is the message shown to the caller."""


class InvalidRequest(RegistryError):
    """The request is malformed or breaks a rule (SNMS status -2)."""


class NotFound(RegistryError):
    """The named record does not exist (SNMS status -2)."""


class AlreadyExists(RegistryError):
    """A different record already holds this name (SNMS status -2)."""


class Unauthenticated(RegistryError):
    """No valid credential was presented (SNMS status -1)."""


class LoginFailed(RegistryError):
    """Wrong user name or secret (SNMS answers this with status -2)."""


class Forbidden(RegistryError):
    """The caller is known but may not do this (SNMS status -3)."""
