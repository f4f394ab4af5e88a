"""``GET /api/verify/{handle}``: trusted resolution over HTTP.

The record's values as ``/api/handles/{handle}`` gives them, with the verdict on
them: every ``HS_SIGNATURE``, its chain of ``HS_CERT`` up to the trust root, and
the first problem in the order HANDLE.NET reports problems. A name that is not
found (or served elsewhere) gets the same answer as its resolution.
"""

from __future__ import annotations

import time

from aiohttp import web

from metrics.tally import TALLY

from .. import codes as rc
from ..verification import Verification
from .keys import RESOLVER, VERIFICATION
from .rest import api_endpoint, counted_failures, render, requested_handle, resolution_body
from .values_json import value_json

VERIFY_ROOT = "/api/verify"


@api_endpoint
async def verify_handle(request: web.Request) -> web.Response:
    started = time.perf_counter()
    with counted_failures("http", started):
        name = request.app[RESOLVER].parse(requested_handle(request, VERIFY_ROOT))
        verified = await request.app[VERIFICATION].verify(name)
        resolution = verified.resolution
        if verified.report is None:
            status, body = resolution_body(resolution)
        else:
            status = 200
            body = {
                "responseCode": rc.RC_SUCCESS,
                **verified.report.to_json(),
                "handle": name.text,
                "values": [value_json(v) for v in resolution.values],
            }
        TALLY.count(
            "http", resolution.outcome, resolution.account_prefix, time.perf_counter() - started
        )
        return render(request, status, body)


def add_routes(app: web.Application, verification: Verification) -> None:
    """Before the REST API's catch-all for unknown ``/api/`` paths."""
    app[VERIFICATION] = verification
    app.router.add_get(VERIFY_ROOT + r"/{handle:[\s\S]+}", verify_handle)
