"""Errors of registry operations, one class per answer a caller can act on.

Each front end maps these onto its own terms in one table (SNMS status
codes, Handle response codes, HTTP statuses), and a database outage
(:class:`StorageUnavailable`) in one clause of its own.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class; ``str(error)`` is the message shown to the caller."""


class StorageUnavailable(Exception):
    """The database could not serve a read or a write: unreachable, gone, out of
    connections, or failing. :mod:`registry.db` raises it where the registry
    reads and writes, with the driver's exception as ``__cause__``; ``str(error)``
    is a one-line reason for the operator's log.

    Not a :class:`RegistryError`: the reason (a host, a file path) is not for
    the caller, and each front end answers an outage in fixed words of its own
    (native RC 3, HTTP 503, DNS SERVFAIL) instead of through its error table."""


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


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` for a wait of ``seconds``: whole seconds, rounded up, at least 1."""
    return str(max(1, int(seconds + 0.999)))


class Throttled(RegistryError):
    """Refused for now: the caller may try again in ``retry_after`` seconds (HTTP 429)."""

    reason = ("", "")
    """Why, in Chinese and in English: the message says it, then when to try again."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        chinese, english = self.reason
        super().__init__(
            f"{chinese}，请{self.retry_after_header}秒后重试 "
            f"({english}; retry in {self.retry_after_header} s)"
        )

    @property
    def retry_after_header(self) -> str:
        return retry_after_header(self.retry_after)


class LockedOut(Throttled, LoginFailed):
    """Too many failed logins for the account or from the address: no login,
    right or wrong, for ``retry_after`` seconds."""

    reason = ("登录失败次数过多", "too many failed logins")


class TooManyRequests(Throttled):
    """The caller's enterprise is over its request rate."""

    reason = ("请求过于频繁", "too many requests")


class Forbidden(RegistryError):
    """The caller is known but may not do this (SNMS status -3)."""


class QuotaExceeded(Forbidden):
    """A quota is used up: nothing more of this kind until it is raised."""


class RegisterCountLimit(QuotaExceeded):
    """The enterprise holds as many identifiers as it may (IDIS RC 604)."""


class PrefixLimit(QuotaExceeded):
    """The node has allocated as many enterprise prefixes as it may (IDIS RC 605)."""


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
