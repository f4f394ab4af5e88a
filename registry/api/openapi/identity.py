"""The document of registry.api.identity: logging in, users, access keys."""

from __future__ import annotations

from .envelope import SUCCESS, operation
from .schema import Schema, json_object, ref, string

_TOKEN = json_object({"token": {"type": "string"}}, ("token",))


def paths() -> dict[str, Schema]:
    return {
        "/identity/token": {
            "post": operation(
                "Log in with a user name or access key and the password or secret key",
                _TOKEN,
                body=ref("Login"),
                public=True,
            )
        },
        "/identity/token/v1": {
            "post": operation(
                'Log in with sha256(sha256(password) + "yyyy-MM-dd") (node-local date)',
                _TOKEN,
                body=ref("Login"),
                public=True,
            )
        },
        "/identity/registry": {
            "post": operation("Create a user (node administrators)", SUCCESS, body=ref("NewUser"))
        },
        "/identity/access-key": {
            "post": operation(
                "Issue an AK/SK pair for yourself (administrators: for anyone) — idnode extension",
                json_object(
                    {"accessKey": {"type": "string"}, "secretKey": {"type": "string"}},
                    ("accessKey", "secretKey"),
                ),
                body=json_object({"username": string(50)}),
            )
        },
    }


def schemas() -> dict[str, Schema]:
    return {
        "Login": json_object(
            {"username": string(64), "userName": string(64), "password": string(255, minLength=1)},
            ("username", "password"),
        ),
        "NewUser": json_object(
            {
                "userName": string(50),
                "username": string(50),
                "password": string(255, minLength=1),
                "email": string(255),
                "mobile": string(32),
            },
            ("userName", "password"),
        ),
    }
