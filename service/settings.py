"""Every setting of the service, in one pydantic-settings class (env prefix ``CRYSTAL_``).

Nothing is read when this module is imported: :func:`get_settings` builds the settings on first
use, and tests pass their own :class:`Settings` to ``create_app``.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]

MIB = 1 << 20
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_RAY_ADDRESS_RE = re.compile(r"^(ray://)?[A-Za-z0-9._\-\[\]:]+:\d+$")


def _default_parse_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _default_data_dir() -> Path:
    """``$XDG_STATE_HOME/crystal-service`` (``~/.local/state/crystal-service``); nothing is created here."""
    state_home = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state_home) / "crystal-service"


class Settings(BaseSettings):
    """Service settings; each field is read from ``CRYSTAL_<FIELD>`` (e.g. ``CRYSTAL_MODELS_DIR``).

    Attributes:
        models_dir: The model repository, ``<models_dir>/<name>/<version>/manifest.json``.
        backend: Inference backend serving every model: ``auto`` (onnxruntime on a CPU for models
            with a ``model.onnx`` in float32, torch otherwise), ``torch`` or ``onnx`` (see
            ``service.backends``).
        model_backends: Backend per model name, overriding ``backend``, e.g. ``{"cgcnn-mp-band-gap": "onnx"}``.
        device: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (``float32`` on a CPU, ``float64`` on CUDA), ``float32`` or
            ``float64``. A structure must get the same answer alone or in a batch: on a CPU
            float32 answers are bit-identical (the torch backend pads every batch, onnxruntime
            runs on one thread; checked at warm-up, ``batch_invariant`` in ``/v1/models``); on
            CUDA that is not established, and float64 keeps batch effects near 1e-15.
        defaults: Default model per property, e.g. ``{"band_gap": "sr-cgcnn-band-gap"}`` (a model
            name, or ``name@version``). Properties not listed get the model with the best
            validation MAE, else the first by name.
        parse_workers: Processes parsing CIFs and building graphs.
        torch_threads: Intra-op threads of the inference worker (CPU).
        batch_max_structures: Largest micro-batch handed to a model; by default 64 on a CPU
            and 1,024 on a CUDA device (see :meth:`batch_limits`).
        batch_max_atoms: Largest number of atoms in one micro-batch; by default 256 on a CPU
            (larger batches spill the CPU caches: float64 inference of ~20-atom crystals cost
            0.7 ms per crystal per model in batches of <= 128 atoms, 4.2 ms in batches of
            <= 4,096) and 16,384 on a CUDA device.
        batch_wait_ms: How long the inference worker waits for more structures to fill a
            micro-batch; only while other structures are being parsed, and only until a
            micro-batch is full.
        batch_bulk_wait_ms: The same window while only batch jobs' structures are waiting: a job
            trades a little latency per structure for full micro-batches.
        bulk_nice: Niceness added to the parse workers of batch jobs (a second pool of
            ``parse_workers``, started by the first job), so interactive parses get the CPU first.
        batch_concurrency: Files of one batch request in the parse pool at a time (keeps room
            for single requests arriving during a large batch).
        max_atoms: Largest structure (atoms per data block) accepted; a CIF's atoms are counted
            before its symmetry expansion is built.
        strict: Refuse (422, the warning's code) a structure the reader has warnings about
            (``composition_mismatch``, ``symmetry_fallback``, ``sites_dropped``...) instead of
            answering with the warnings; the ``strict`` query parameter overrides it per request.
            Batch jobs follow this setting unless the job says otherwise (``strict`` on ``POST /v1/jobs``).
        occupancy_tolerance: A CIF site of one element whose occupancy is within this of 1
            (``0.995`` with the default 0.01) is read as fully occupied, with an
            ``occupancy_rounded`` warning; further from 1 it is a partial occupancy, refused
            (``disordered_structure``) with a sentence saying which tolerance would have accepted it.
        parse_timeout_s: Longest one file may take in a parse worker (parsing and graph building,
            every data block); past it the worker is killed and replaced and the file fails with
            ``parse_timeout``.
        parse_max_memory_bytes: Address space a parse worker may add to its size after start-up
            (``RLIMIT_AS``); a file that needs more fails with ``parse_memory_exceeded`` and the
            machine keeps its memory (0: no cap).
        max_file_bytes: Largest CIF accepted, also per archive member.
        max_files: Most files per batch request, archive members included.
        max_request_bytes: Largest batch request body.
        max_unpacked_bytes: Most bytes an archive may unpack to (zip-bomb guard).
        api_key: When set, ``/v1/*`` requires the header ``X-API-Key``; health endpoints and
            ``/metrics`` stay open.
        api_keys: Named keys, ``{"alice": "<key>", ...}``, accepted like ``api_key`` (whose name is
            ``default``); each key sees and deletes only the jobs it created, and its jobs have
            their own storage quota (``jobs_max_storage_bytes_per_key``).
        http_max_header_bytes: Longest request line plus headers (the ``h11`` parser's
            ``max_incomplete_event_size``); longer is answered 400 and the connection closed.
        http_header_timeout_s: A connection must send a complete request head within this many
            seconds of opening (or of its previous answer), else it is closed (slow-client guard).
        http_keep_alive_s: A connection that sends nothing for this many seconds (just opened, or
            between requests) is closed.
        http_max_connections: Connections and requests in progress at once (uvicorn's
            ``limit_concurrency``); past it requests are answered 503 at once.
        allowed_hosts: Host names the service answers for besides ``localhost``, ``127.0.0.1``,
            ``::1`` and the address a connection arrived on (DNS rebinding guard); ``["*"]``: any.
        allowed_origins: Origins of other sites' pages allowed to send state-changing requests
            (cross-site request guard), e.g. ``["https://lab.example"]``.
        admin_keys: Names of the API keys that may reload the models (``POST /v1/models/reload``);
            ``default`` is ``api_key``. Without keys, every client may (one user, on loopback).
        models_watch_s: Seconds between looks at ``models_dir`` for new, changed or removed
            model folders, which are then loaded without a restart (0: only on
            ``POST /v1/models/reload``).
        log_level: Python log level of the ``service`` logger.
        data_dir: Where batch jobs are kept: ``jobs.sqlite3`` (metadata and results) and
            ``jobs/<id>/inputs.bin`` (the uploaded CIFs). Created on the first job.
        jobs_max_files: Most CIFs in one job, archive members included.
        jobs_max_request_bytes: Largest ``POST /v1/jobs`` body (held in memory while unpacked).
        jobs_max_unpacked_bytes: Most bytes the archives of one job may unpack to.
        jobs_max_storage_bytes: Most bytes all stored jobs may use: their inputs as stored
            (zlib-compressed) and their results; a job that would pass it is refused with
            ``storage_full``.
        jobs_max_storage_bytes_per_key: With API keys, most bytes the jobs of one key may use.
        jobs_ttl_s: Seconds a finished job is kept (default 7 days), then deleted.
        jobs_chunk: Files a job reads from disk at a time.
        jobs_parsing: Files of a job in the parse pool at a time (parsed structures go on to
            inference without holding a place); while an interactive request is being answered,
            a job starts parsing no new file beyond one.
        jobs_executor: What runs batch jobs: ``inprocess`` (this process's parse pool and
            inference workers) or ``ray`` (parse tasks and inference actors on a Ray cluster,
            ``pip install '.[ray]'``; results come back into the same job store).
        ray_address: The Ray cluster of ``jobs_executor=ray`` and of ``python -m service screen``:
            ``auto`` (the cluster this machine belongs to, ``ray start`` or ``RAY_ADDRESS``),
            ``local`` (start a Ray instance inside this process), ``ray://host:port`` (Ray
            Client) or ``host:port`` (the head's GCS address).
        ray_actors: Inference actors, each loading every model once (one GPU each when the cluster has GPUs).
        ray_actor_cpus: CPUs an inference actor reserves on the cluster (a fraction is allowed: on
            a CPU, inference costs a fraction of parsing; parse tasks take one CPU each).
        ray_parse_batch: Files per Ray parse task.
        ray_start_timeout_s: Longest the inference actors may take to be placed on the cluster and load
            the models. Past it the start fails (its actors are ended, the reason is logged) and the
            jobs stay queued until the next try, about a minute later.
    """

    model_config = SettingsConfigDict(env_prefix="CRYSTAL_", extra="forbid", frozen=True)

    models_dir: Path = Path("models")
    backend: str = "auto"
    model_backends: dict[str, str] = Field(default_factory=dict)
    device: str = "auto"
    precision: Literal["auto", "float32", "float64"] = "auto"
    defaults: dict[str, str] = Field(default_factory=dict)
    parse_workers: int = Field(default_factory=_default_parse_workers, ge=1, le=64)
    torch_threads: int = Field(1, ge=1, le=64)
    batch_max_structures: int | None = Field(None, ge=1)
    batch_max_atoms: int | None = Field(None, ge=1)
    batch_wait_ms: float = Field(10.0, ge=0, le=1000)
    batch_bulk_wait_ms: float = Field(100.0, ge=0, le=10_000)
    batch_concurrency: int = Field(8, ge=1)
    bulk_nice: int = Field(10, ge=0, le=19)
    max_atoms: int = Field(500, ge=1)
    strict: bool = False
    occupancy_tolerance: float = Field(0.01, ge=0, le=0.1)
    parse_timeout_s: float = Field(10.0, gt=0, le=3600)
    parse_max_memory_bytes: int = Field(2048 * MIB, ge=0)
    max_file_bytes: int = Field(2 * MIB, ge=1)
    max_files: int = Field(1000, ge=1)
    max_request_bytes: int = Field(256 * MIB, ge=1)
    max_unpacked_bytes: int = Field(256 * MIB, ge=1)
    api_key: SecretStr | None = None
    api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    http_max_header_bytes: int = Field(64 << 10, ge=1024, le=16 * MIB)
    http_header_timeout_s: float = Field(10.0, gt=0, le=3600)
    http_keep_alive_s: int = Field(5, ge=1, le=3600)
    http_max_connections: int = Field(512, ge=1)
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    admin_keys: list[str] = Field(default_factory=lambda: ["default"])
    models_watch_s: float = Field(5.0, ge=0, le=86_400)
    log_level: str = "INFO"
    data_dir: Path = Field(default_factory=_default_data_dir)
    jobs_max_files: int = Field(100_000, ge=1)
    jobs_max_request_bytes: int = Field(512 * MIB, ge=1)
    jobs_max_unpacked_bytes: int = Field(1024 * MIB, ge=1)
    jobs_max_storage_bytes: int = Field(10 * 1024 * MIB, ge=1)
    jobs_max_storage_bytes_per_key: int = Field(2048 * MIB, ge=1)
    jobs_ttl_s: float = Field(7 * 86_400.0, gt=0)
    jobs_chunk: int = Field(256, ge=1)
    jobs_parsing: int = Field(4, ge=1, le=256)
    jobs_executor: Literal["inprocess", "ray"] = "inprocess"
    ray_address: str = "auto"
    ray_actors: int = Field(1, ge=1, le=1024)
    ray_actor_cpus: float = Field(1.0, gt=0, le=256)
    ray_parse_batch: int = Field(16, ge=1, le=4096)
    ray_start_timeout_s: float = Field(300.0, gt=0)

    def batch_limits(self, device: str) -> tuple[int, int]:
        """``(max structures, max atoms)`` of one micro-batch on ``device``.

        The CUDA defaults come from the atom budget, not from a measurement of batch sizes (the one
        GPU session measured the defaults only: an H200 gave 43,000-73,000 structures/s per model at
        batch 256 in float64): a GPU is launch-bound on small batches, so a micro-batch is
        limited by atoms, 16,384 (about 800 crystals of the data set's ~20 atoms; at 12
        neighbours at most 196,608 edges), and the structure cap, 1,024, is set above what that
        budget holds for typical crystals. 64 structures, the CPU's cap, held GPU batches to
        about 1,300 atoms. A full 16,384-atom batch in float64 grew a CPU process's peak memory by
        718 MiB (shipped CGCNN and SR-CGCNN alike), so its activations fit any supported GPU.
        ``docker/gpu-check.sh`` measures throughput on a GPU.
        """
        cuda = device.startswith("cuda")
        return (
            self.batch_max_structures or (1024 if cuda else 64),
            self.batch_max_atoms or (16_384 if cuda else 256),
        )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE_RE.match(value):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {value!r}")
        return value

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, value: str) -> str:
        from .backends import available_backends

        value = value.strip().lower()
        if value not in available_backends():
            raise ValueError(f"backend must be one of {available_backends()}, not {value!r}")
        return value

    @field_validator("model_backends")
    @classmethod
    def _check_model_backends(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: cls._check_backend(b) for name, b in value.items()}

    @field_validator("ray_address")
    @classmethod
    def _check_ray_address(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in {"auto", "local"}:
            return value.lower()
        if not _RAY_ADDRESS_RE.match(value):
            raise ValueError(f"ray_address must be auto, local, ray://host:port or host:port, not {value!r}")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {value!r}")
        return value

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None  # CRYSTAL_API_KEY= (empty) means no key
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment, built once on first use."""
    return Settings()
