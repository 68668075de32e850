"""OpenAPI descriptions shared by routes (request bodies FastAPI cannot infer from a raw request)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ..errors import PROBLEM_JSON

__all__ = ["FILES_UPLOAD_BODY", "install_problem_responses"]

#: Many CIFs in one request: multipart ``files`` (CIFs and/or archives), or one archive as the body.
FILES_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                            "description": "CIF files and/or .zip / .tar.gz archives of CIFs.",
                        }
                    },
                }
            },
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _problem_content(response: dict[str, Any]) -> None:
    content = response.setdefault("content", {})
    schema = content.pop("application/json", {}).get("schema") or {"$ref": "#/components/schemas/Problem"}
    content[PROBLEM_JSON] = {"schema": schema}


def install_problem_responses(app: FastAPI) -> None:
    """Make the app's OpenAPI say what its errors are: ``application/problem+json`` documents.

    Every documented error response (4xx, 5xx, FastAPI's 422) is given the problem+json media
    type, its schema the ``Problem`` one; every operation gets a ``default`` problem response for
    the errors any route can answer (401, 403, 400 for a foreign host, 413, 503...).
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("Problem", _PROBLEM_SCHEMA)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, response in responses.items():
                    if status[:1] in {"4", "5"}:
                        if status == "422":
                            response.get("content", {}).pop("application/json", None)
                        _problem_content(response)
                responses.setdefault(
                    "default",
                    {
                        "description": "An error (RFC 9457 problem document with a stable code)",
                        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    },
                )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
    },
}
