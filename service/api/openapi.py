"""OpenAPI descriptions shared by routes (request bodies FastAPI cannot infer from a raw request)."""

from __future__ import annotations

from typing import Any

__all__ = ["FILES_UPLOAD_BODY"]

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
