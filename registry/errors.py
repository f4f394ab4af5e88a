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


# Finer answers the Handle protocol distinguishes; each is still one of the above
# for front ends that know only the coarse classes (SNMS).


class InvalidName(InvalidRequest):
    """The name breaks the identifier grammar (Handle RC 102)."""


class InvalidValue(InvalidRequest):
    """A value is malformed or breaks a limit (Handle RC 202)."""


class NotServedHere(InvalidRequest):
    """The name's prefix belongs to no prefix this node serves (Handle RC 301)."""


class ValuesNotFound(NotFound):
    """The record exists but holds none of the values asked for (Handle RC 200)."""


class ValueAlreadyExists(AlreadyExists):
    """A value at that index exists and overwriting was not allowed (Handle RC 201)."""
