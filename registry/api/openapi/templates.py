"""The document of registry.api.templates: metadata templates (SNMS v5 and v3 paths)."""

from __future__ import annotations

from ...templates import MAX_VERSION_CHARS
from ..templates import PATHS
from .envelope import SUCCESS, operation
from .schema import Schema, integer, json_object, nullable, query, ref, string


def _template_operations() -> Schema:
    template = ref("Template")
    return {
        "get": operation(
            "With version: that template; without: every template of the prefix",
            {"anyOf": [template, {"type": "array", "items": template}]},
            parameters=[
                query("prefix", string(64, minLength=1), "the enterprise prefix", required=True),
                query("version", string(MAX_VERSION_CHARS, minLength=1), "the template version"),
            ],
        ),
        "post": operation("Create a metadata template", SUCCESS, body=ref("TemplateSpec")),
        "put": operation("Replace a metadata template", SUCCESS, body=ref("TemplateSpec")),
        "delete": operation(
            "Delete a template version, named in the query or the body",
            SUCCESS,
            parameters=[
                query("prefix", string(64), "the enterprise prefix"),
                query("version", string(MAX_VERSION_CHARS), "the template version"),
            ],
            body=json_object(
                {
                    "prefix": string(64, minLength=1),
                    "version": string(MAX_VERSION_CHARS, minLength=1),
                },
                ("prefix", "version"),
            ),
            body_required=False,
        ),
    }


def paths() -> dict[str, Schema]:
    return {path: _template_operations() for path in PATHS}


def schemas() -> dict[str, Schema]:
    return {
        "TemplateItem": json_object(
            {
                "name": string(128, minLength=1),
                "idType": string(128, minLength=1),
                "idIndex": integer(1),
                "required": {"type": "boolean"},
                "state": integer(),
                "public": {"type": "boolean"},
                "metadata": json_object(
                    {
                        "type": string(16),
                        "minLength": nullable(integer()),
                        "maxLength": nullable(integer()),
                    }
                ),
            },
            ("name", "idType"),
        ),
        "TemplateSpec": json_object(
            {
                "prefix": string(64, minLength=1),
                "version": string(MAX_VERSION_CHARS, minLength=1),
                "items": {"type": "array", "items": ref("TemplateItem")},
                "industryCategory": string(8),
                "industrySpecific": string(8),
                "industryTrade": string(8),
                "industrySubclass": string(8),
                "type": integer(),
                "description": string(1024),
            },
            ("prefix", "version", "items"),
        ),
        "Template": json_object(
            {
                "id": {"type": "integer"},
                "prefix": {"type": "string"},
                "name": {"type": "string"},
                "handle": {"type": "string"},
                "version": {"type": "string"},
                "industryCategory": {"type": "string"},
                "industrySpecific": {"type": "string"},
                "industryTrade": {"type": "string"},
                "industrySubclass": {"type": "string"},
                "type": {"type": "integer"},
                "description": {"type": "string"},
                "items": {
                    "type": "array",
                    "items": json_object(
                        {
                            "name": {"type": "string"},
                            "idType": {"type": "string"},
                            "idIndex": {"type": "integer"},
                            "metadataId": nullable({"type": "integer"}),
                            "metadata": json_object(
                                {
                                    "type": {"type": "string"},
                                    "minLength": nullable({"type": "integer"}),
                                    "maxLength": nullable({"type": "integer"}),
                                }
                            ),
                            "required": {"type": "boolean"},
                            "state": {"type": "integer"},
                            "public": {"type": "boolean"},
                        },
                        ("name", "idType", "idIndex"),
                    ),
                },
            },
            ("id", "prefix", "version", "items"),
        ),
    }
