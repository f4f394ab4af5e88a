"""Handle response code → HTTP status, as the HANDLE.NET REST API maps them."""

from __future__ import annotations

from .. import codes as rc

_HTTP_OF_RC = {
    rc.RC_SUCCESS: 200,
    rc.RC_ERROR: 500,
    rc.RC_SERVER_TOO_BUSY: 503,
    rc.RC_PROTOCOL_ERROR: 400,
    rc.RC_OPERATION_NOT_SUPPORTED: 501,
    7: 503,  # server read-only
    rc.RC_HANDLE_NOT_FOUND: 404,
    rc.RC_HANDLE_ALREADY_EXISTS: 409,
    rc.RC_INVALID_HANDLE: 400,
    rc.RC_VALUE_ALREADY_EXISTS: 409,
    rc.RC_INVALID_VALUE: 400,
    rc.RC_SERVER_NOT_RESP: 400,
    rc.RC_SERVICE_REFERRAL: 300,
    rc.RC_PREFIX_REFERRAL: 300,
    400: 403,
    rc.RC_INSUFFICIENT_PERMISSIONS: 403,
    rc.RC_AUTHENTICATION_NEEDED: 401,
    rc.RC_AUTHENTICATION_FAILED: 403,
    404: 403,
    rc.RC_REQUEST_LIMIT_DAILY: 429,
    rc.RC_REGISTER_COUNT_LIMIT: 403,
    rc.RC_PREFIX_LIMIT: 403,
}


def http_status(code: int, *, resolution: bool = False, created: bool = False) -> int:
    """``resolution``: RC 200 on a GET is a 200 with no values, else a 400;
    ``created``: a create or add that overwrote nothing is a 201."""
    if code == rc.RC_VALUES_NOT_FOUND:
        return 200 if resolution else 400
    if code == rc.RC_SUCCESS and created:
        return 201
    return _HTTP_OF_RC.get(code, 500)
