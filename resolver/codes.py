"""Handle response codes (RFC 3652 §2.2.2.2 as HANDLE.NET numbers them) and the
one table that turns registry errors into them; both Handle front ends use it."""

from __future__ import annotations

from registry.errors import (
    AlreadyExists,
    Forbidden,
    InvalidName,
    InvalidRequest,
    InvalidValue,
    LoginFailed,
    NotFound,
    NotServedHere,
    PrefixLimit,
    RegisterCountLimit,
    RegistryError,
    TooManyRequests,
    Unauthenticated,
    ValueAlreadyExists,
    ValuesNotFound,
)

RC_SUCCESS = 1
RC_ERROR = 2
RC_SERVER_TOO_BUSY = 3
RC_PROTOCOL_ERROR = 4
RC_OPERATION_NOT_SUPPORTED = 5
RC_RECURSION_COUNT_TOO_HIGH = 6
RC_HANDLE_NOT_FOUND = 100
RC_HANDLE_ALREADY_EXISTS = 101
RC_INVALID_HANDLE = 102
RC_VALUES_NOT_FOUND = 200
RC_VALUE_ALREADY_EXISTS = 201
RC_INVALID_VALUE = 202
RC_SERVER_NOT_RESP = 301
RC_SERVICE_REFERRAL = 302
RC_PREFIX_REFERRAL = 303
RC_INSUFFICIENT_PERMISSIONS = 401
RC_AUTHENTICATION_NEEDED = 402
RC_AUTHENTICATION_FAILED = 403
# IDIS extensions (the national SDKs' numbers): quotas.
RC_REQUEST_LIMIT_DAILY = 603
RC_REGISTER_COUNT_LIMIT = 604
RC_PREFIX_LIMIT = 605

# Most specific first: the first class an error is an instance of decides.
_RC_OF_ERROR: tuple[tuple[type[RegistryError], int], ...] = (
    (ValuesNotFound, RC_VALUES_NOT_FOUND),
    (ValueAlreadyExists, RC_VALUE_ALREADY_EXISTS),
    (InvalidName, RC_INVALID_HANDLE),
    (InvalidValue, RC_INVALID_VALUE),
    (NotServedHere, RC_SERVER_NOT_RESP),
    (NotFound, RC_HANDLE_NOT_FOUND),
    (AlreadyExists, RC_HANDLE_ALREADY_EXISTS),
    (Unauthenticated, RC_AUTHENTICATION_NEEDED),
    (TooManyRequests, RC_SERVER_TOO_BUSY),
    (LoginFailed, RC_AUTHENTICATION_FAILED),
    (RegisterCountLimit, RC_REGISTER_COUNT_LIMIT),
    (PrefixLimit, RC_PREFIX_LIMIT),
    (Forbidden, RC_INSUFFICIENT_PERMISSIONS),
    (InvalidRequest, RC_PROTOCOL_ERROR),
)


def rc_of(error: RegistryError) -> int:
    for cls, code in _RC_OF_ERROR:
        if isinstance(error, cls):
            return code
    return RC_ERROR


_OUTCOMES = {
    RC_SUCCESS: "found",
    RC_HANDLE_NOT_FOUND: "not_found",
    RC_VALUES_NOT_FOUND: "not_found",
    RC_SERVICE_REFERRAL: "referral",
    RC_PREFIX_REFERRAL: "referral",
    RC_SERVER_NOT_RESP: "refused",
    RC_RECURSION_COUNT_TOO_HIGH: "refused",
    RC_AUTHENTICATION_NEEDED: "refused",
    RC_AUTHENTICATION_FAILED: "refused",
    RC_INSUFFICIENT_PERMISSIONS: "refused",
    RC_REQUEST_LIMIT_DAILY: "refused",
}


def outcome_of(code: int) -> str:
    """How a resolution answered with this code counts (``idnode_resolutions_total``):
    malformed requests and the node's own failures are errors."""
    return _OUTCOMES.get(code, "error")
