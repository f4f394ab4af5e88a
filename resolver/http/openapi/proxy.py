"""The document of resolver.http.proxy: the redirect proxy and its lookup page."""

from __future__ import annotations

from registry.api.openapi.schema import Schema, path_param, query, string


def _html(description: str) -> Schema:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def paths() -> dict[str, Schema]:
    lookup = {
        "200": _html("The lookup page for the identifier"),
        "400": _html("Not a valid identifier"),
        "401": _html("Credentials were sent and do not check out"),
        "404": _html("Not found, or not served here"),
        "503": _html("Storage unavailable or too busy"),
        "504": _html("The node serving this prefix did not answer (recursion)"),
    }
    return {
        "/": {
            "get": {
                "tags": ["proxy"],
                "summary": "The lookup page: a search box; with handle=, that identifier's page",
                "parameters": [query("handle", string(255), "the identifier to show")],
                "responses": lookup,
            }
        },
        "/{handle}": {
            "get": {
                "tags": ["proxy"],
                "summary": "Redirect to the record's first URL value (noredirect: its page)",
                "parameters": [
                    path_param(
                        "handle",
                        string(512, minLength=1, pattern="^[0-9]"),
                        "the identifier (every name of the node starts with a digit)",
                        "88.100",
                    ),
                    query("noredirect", string(16), "show the page, never redirect"),
                ],
                "responses": {
                    **lookup,
                    "302": {
                        "description": "To the record's URL",
                        "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
                    },
                },
            }
        },
    }
