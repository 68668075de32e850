"""``POST /v1/predict`` (one structure) and ``POST /v1/predict/batch`` (many, JSON or NDJSON)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from crystalgraph import NOTICE_CODES

from ...intake import read_batch, read_single
from ...schemas import BatchItem, BatchResponse, PredictRequest, PredictResponse, Problem
from ..deps import EngineDep, LimitsDep, SelectionDep, StrictDep
from ..openapi import FILES_UPLOAD_BODY

router = APIRouter(prefix="/v1/predict", tags=["predict"])

NDJSON = "application/x-ndjson"

_CIF_SCHEMA = {"type": "string", "description": "A CIF file."}
_SINGLE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "contentMediaType": "chemical/x-cif"}
                    },
                },
                "encoding": {"file": {"contentType": "chemical/x-cif, text/plain, application/octet-stream"}},
            },
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "chemical/x-cif": {"schema": _CIF_SCHEMA},
            "text/plain": {"schema": _CIF_SCHEMA},
        },
    }
}
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text}
    for status, text in {
        400: "archive_invalid",
        401: "unauthorized",
        404: "unknown_model",
        413: "file_too_large, request_too_large, too_many_files",
        415: "unsupported_media_type",
        422: "invalid_cif, invalid_structure_file, invalid_cell, disordered_structure, unsupported_element, "
        "isolated_atom, overlapping_atoms, empty_structure, too_many_atoms, parse_timeout, parse_memory_exceeded, "
        "parser_crashed, invalid_request; with strict=true, a reader warning's code: " + ", ".join(NOTICE_CODES),
        503: "not_ready",
    }.items()
}


@router.post(
    "",
    summary="Predict the properties of one structure",
    response_model=PredictResponse,
    responses=_PROBLEMS,
    openapi_extra=_SINGLE_BODY,
)
async def predict(
    request: Request, engine: EngineDep, selection: SelectionDep, limits: LimitsDep, strict: StrictDep
) -> PredictResponse:
    """One CIF as multipart field ``file``, as JSON ``{"cif": "..."}``, or as the raw body.

    A CIF with several data blocks is predicted for its first block, with a
    ``multiple_blocks`` warning; the batch endpoint predicts each block.
    """
    upload = await read_single(request, limits)
    return await engine.predict_one(upload, selection, strict=strict)


async def _ndjson(items: AsyncIterator[BatchItem]) -> AsyncIterator[str]:
    async for item in items:
        yield item.model_dump_json() + "\n"


@router.post(
    "/batch",
    summary="Predict many structures; a bad file never fails the batch",
    response_model=BatchResponse,
    responses={**_PROBLEMS, 200: {"content": {NDJSON: {"schema": {"type": "string"}}}}},
    openapi_extra=FILES_UPLOAD_BODY,
)
async def predict_batch(
    request: Request, engine: EngineDep, selection: SelectionDep, limits: LimitsDep, strict: StrictDep
) -> BatchResponse | StreamingResponse:
    """Several multipart ``files`` (CIFs and/or ``.zip``/``.tar.gz`` archives), or one archive body.

    Every data block of every file gets a result (``file#block`` for multi-block CIFs), each
    ``ok: true`` with predictions or ``ok: false`` with an ``error``. With ``Accept:
    application/x-ndjson`` results stream one per line as they are computed (``index`` gives
    the file's input position); otherwise they come in input order.
    """
    uploads = await read_batch(request, limits)
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(_ndjson(engine.iter_batch(uploads, selection, strict=strict)), media_type=NDJSON)
    return await engine.predict_batch(uploads, selection, strict=strict)
