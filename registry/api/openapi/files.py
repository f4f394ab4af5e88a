"""The document of registry.api.files: the attachments of an enterprise's filing."""

from __future__ import annotations

from ...services.attachments import IMAGE_LIMIT, PDF_LIMIT
from .envelope import operation
from .schema import Schema, integer, json_object, path_param

_MB = 1024 * 1024
_KINDS = ("image/png", "image/jpeg", "image/gif", "image/bmp", "application/pdf")
"""What an upload may be (registry.services.attachments sniffs it), so what a download is."""


def _upload() -> Schema:
    return {
        **operation(
            f"Upload an attachment for a filing (image ≤ {IMAGE_LIMIT // _MB} MB "
            f"or PDF ≤ {PDF_LIMIT // _MB} MB)",
            json_object({"id": {"type": "integer"}, "path": {"type": "string"}}, ("id", "path")),
        ),
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": json_object(
                        {"file": {"type": "string", "format": "binary"}}, ("file",)
                    )
                }
            },
        },
    }


def _download() -> Schema:
    described = operation(
        "Download an attachment (idnode extension, for reviewing a filing)",
        {"type": "null"},
        parameters=[path_param("id", integer(1), "the attachment id")],
    )
    answer = described["responses"]["200"]
    answer["content"].update(
        {kind: {"schema": {"type": "string", "format": "binary"}} for kind in _KINDS}
    )
    answer["description"] = "The file; or, as JSON, the envelope saying why not"
    return described


def paths() -> dict[str, Schema]:
    return {
        "/snms/api/file/upload": {"post": _upload()},
        "/snms/api/file/{id}": {"get": _download()},
    }
