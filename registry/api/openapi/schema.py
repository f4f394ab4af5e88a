"""Building blocks of an OpenAPI 3.1 document as plain data: JSON Schemas,
parameters and responses. Every HTTP front end's part of the node's document
is written with them (``resolver.http.openapi`` too, as the REST API builds on
the registry's)."""

from __future__ import annotations

from typing import Any

from ..fields import INT32_MAX, INT32_MIN

Schema = dict[str, Any]
"""A JSON Schema, or any other object of the document."""


def ref(name: str) -> Schema:
    """A reference to one of the document's component schemas."""
    return {"$ref": f"#/components/schemas/{name}"}


def string(max_length: int, **extra: Any) -> Schema:
    return {"type": "string", "maxLength": max_length, **extra}


def integer(minimum: int = INT32_MIN, maximum: int = INT32_MAX) -> Schema:
    """An integer a 32-bit database column holds, unless narrowed."""
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def json_object(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def query(name: str, schema: Schema, description: str = "", *, required: bool = False) -> Schema:
    """A query-string parameter."""
    parameter: Schema = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def path_param(name: str, schema: Schema, description: str, example: Any = None) -> Schema:
    """A parameter in the path template (always required)."""
    parameter = {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }
    if example is not None:
        parameter["example"] = example
    return parameter


def json_response(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
