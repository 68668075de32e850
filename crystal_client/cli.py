"""``crystal-predict``: screen a folder of CIFs through the service's jobs API, or predict a few CIFs.

    crystal-predict screen DIR_OR_ARCHIVE --url http://127.0.0.1:8000 --out results.csv
    crystal-predict screen DIR_OR_ARCHIVE --job JOB_ID --out results.csv   # follow a given job
    crystal-predict predict FILE.cif [FILE.cif ...]
    crystal-predict cancel JOB_ID

``screen`` packs every ``*.cif`` under the folder (recursively) into a ``.tar.gz``, submits it
as a job, shows a progress bar (files, rate, ETA) until the job finishes, and downloads the
results: ``--out`` ending ``.csv`` gets one row per structure with ``file, formula, n_sites``,
each property and the model that predicted it, and ``error_code, error`` for the ones that
could not be predicted; ``.ndjson`` (or ``.jsonl``) gets the service's JSON result per line,
``.json`` a JSON array of them; any other suffix is refused. The download goes to
``OUT.<job>.part`` and is renamed to ``OUT`` once complete. Interrupted (Ctrl-C, a lost
connection), the same command again re-attaches to the job it submitted: ``OUT.job.json``
records it, and the upload's ``Idempotency-Key`` is a hash of the files and options, so the
service never runs the same submission twice; the download continues where it stopped.
``--new`` submits again anyway; ``cancel JOB_ID`` stops a job.
Connection errors are retried with back-off (``--retries``); a service that cannot be reached
at all fails within seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ._files import archive_media_type, find_cifs, pack, submission_key
from ._http import ServiceClient, ServiceError
from ._results import download, results_format
from ._state import Submission, clear_state, read_state, write_state

__all__ = ["main"]

FINISHED = {"done", "failed", "cancelled"}
DEFAULT_URL = "http://127.0.0.1:8000"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _submit(
    client: ServiceClient, path: Path, files: list[Path] | None, models: str | None, key: str
) -> tuple[dict[str, Any], bool]:
    """Upload a folder's CIFs (packed) or an archive as a job; ``(job, new)``.

    The upload carries ``key`` as its ``Idempotency-Key``: a retry, or a rerun after Ctrl-C,
    gets the job the service already holds for it (``new`` is then ``False``).
    """
    params = {"models": models} if models else {}
    headers = {"Idempotency-Key": key}
    with tempfile.TemporaryDirectory(prefix="crystal-predict-") as tmp:
        if files is not None:
            archive, media = Path(tmp) / "upload.tar.gz", "application/gzip"
            pack(path, files, archive)
            _say(f"packed {len(files)} CIFs from {path} ({archive.stat().st_size / 1e6:.1f} MB)")
        else:
            archive, media = path, archive_media_type(path) or ""

        def body() -> dict[str, Any]:
            return {"content": archive.read_bytes(), "headers": {**headers, "Content-Type": media}}

        response = client.request("POST", "/v1/jobs", params=params, body=body, timeout=None)
    job: dict[str, Any] = response.json()
    return job, response.status_code == 202


def _recorded_job(client: ServiceClient, out: Path, key: str, url: str) -> dict[str, Any] | None:
    """The job recorded beside ``out`` for the same inputs, options and service, if the service still has it."""
    state = read_state(out)
    if state is None or state.key != key or state.url.rstrip("/") != url.rstrip("/"):
        return None
    try:
        job: dict[str, Any] = client.request("GET", f"/v1/jobs/{state.job}").json()
    except ServiceError as exc:
        if exc.code == "job_not_found":  # deleted or expired: submit again
            return None
        raise
    return job


def _inputs(path: Path) -> list[Path] | None:
    """A folder's structure files (``None`` for an archive).

    Raises:
        ServiceError: ``no_cifs`` for a folder without any, ``not_an_archive`` for another file.
    """
    if path.is_dir():
        files = find_cifs(path)
        if not files:
            raise ServiceError("no_cifs", f"no *.cif file under {path}")
        return files
    if archive_media_type(path) is None:
        raise ServiceError("not_an_archive", f"{path} is neither a folder nor a .zip/.tar.gz archive")
    return None


def _counts(job: dict[str, Any]) -> str:
    return f"{job['state']}, {job['counts']['done']} of {job['counts']['total']} files done"


def _start(client: ServiceClient, args: argparse.Namespace, out: Path, held: list[dict[str, Any]]) -> dict[str, Any]:
    """The job to follow: the recorded one for the same inputs and options, else a new submission.

    The job goes into ``held`` as soon as it is known, for a Ctrl-C to name it.
    """
    path = Path(args.path)
    files = _inputs(path)
    key = submission_key(path, args.models, files)
    job = None if args.new else _recorded_job(client, out, key, args.url)
    if job is not None:
        held.append(job)
        _say(f"re-attached to job {job['id']}, submitted earlier for the same files and options: {_counts(job)}")
        return job
    sent = hashlib.sha256(f"{key}\n{uuid.uuid4()}".encode()).hexdigest() if args.new else key
    job, new = _submit(client, path, files, args.models, sent)
    held.append(job)
    write_state(out, Submission(job=job["id"], key=key, url=args.url))
    if new:
        _say(f"job {job['id']} submitted: {job['counts']['total']} files")
    else:
        _say(
            f"re-attached to job {job['id']}: the service already has a job for the same files and options "
            f"({_counts(job)}); --new submits them again"
        )
    return job


def _interrupted(client: ServiceClient, job: dict[str, Any] | None, args: argparse.Namespace, out: Path) -> None:
    """Ctrl-C: say what goes on on the service and how to re-attach or cancel (asked when on a terminal)."""
    if job is None:
        _say(
            "\ninterrupted before the service answered the upload. Run the same command again: the upload carries "
            "a key derived from the files and options, so the service does not start a second job for them."
        )
        return
    job_id = job["id"]
    if job["state"] in FINISHED:
        _say(f"\ninterrupted: job {job_id} has finished; run the same command again to download its results")
        return
    cancel = f"crystal-predict cancel {job_id} --url {args.url}"
    if sys.stdin.isatty():
        try:
            answer = input(f"\ninterrupted. Job {job_id} goes on running on the service. Cancel it? [y/N] ")
        except (EOFError, KeyboardInterrupt):
            answer = ""
        if answer.strip().lower() in {"y", "yes"}:
            client.request("DELETE", f"/v1/jobs/{job_id}")
            clear_state(out)
            _say(f"job {job_id} cancelled and deleted")
            return
    _say(
        f"\ninterrupted: job {job_id} goes on on the service. Run the same command again to re-attach to it "
        f"(no new upload), or cancel it: {cancel}"
    )


def progress_counts(counts: dict[str, Any]) -> dict[str, str]:
    """The progress bar's counts, as text: tqdm writes a number 10,000 as ``1e+4``."""
    return {"ok": str(counts["ok"]), "failed": str(counts["failed"])}


def _follow(client: ServiceClient, job: dict[str, Any], *, poll: float, progress: bool) -> dict[str, Any]:
    """Poll the job until it finishes, with a progress bar over its files."""
    counts = job["counts"]
    with tqdm(
        total=counts["total"],
        initial=counts["done"],
        unit="file",
        desc="screening",
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.1,
    ) as bar:
        waiting = None
        while True:
            counts = job["counts"]
            if job.get("waiting") and job["waiting"] != waiting:  # a queued job that cannot start says why, once
                waiting = job["waiting"]
                bar.write(f"waiting: {waiting['code']}: {waiting['detail']}", file=sys.stderr)
            bar.set_postfix(progress_counts(counts), refresh=False)
            bar.update(counts["done"] - bar.n)
            if job["state"] in FINISHED:
                return job
            time.sleep(poll)
            job = client.request("GET", f"/v1/jobs/{job['id']}").json()


def _exists(path: Path) -> None:
    if not path.exists():
        raise ServiceError("file_not_found", f"{path}: no such file or folder")


def screen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    results_format(out)  # refuse an unknown suffix before uploading anything
    if not args.job:
        _exists(Path(args.path))
    held: list[dict[str, Any]] = []  # the job, once known
    with ServiceClient(args.url, api_key=args.api_key, retries=args.retries) as client:
        try:
            if args.job:
                job = client.request("GET", f"/v1/jobs/{args.job}").json()
                held.append(job)
                _say(f"job {job['id']}: {_counts(job)}")
            else:
                job = _start(client, args, out, held)
            _say(
                "if interrupted, run the same command again to re-attach "
                f"(or: crystal-predict screen {args.path} --job {job['id']} --out {args.out})"
            )
            job = _follow(client, job, poll=args.poll, progress=not args.no_progress)
            held.append(job)
            rows = download(client, job["id"], out)
        except KeyboardInterrupt:
            _interrupted(client, held[-1] if held else None, args, out)
            return 130
    counts = job["counts"]
    _say(f"job {job['state']}: wrote {rows} rows to {args.out} ({counts['ok']} predicted, {counts['failed']} failed)")
    if rows != counts["ok"] + counts["failed"]:
        _say(f"error: expected {counts['ok'] + counts['failed']} rows, got {rows}; run the same command to resume")
        return 1
    clear_state(out)
    if job["state"] != "done":
        error = job.get("error") or {}
        _say(f"error: the job {job['state']}: {error.get('code', '')} {error.get('detail', '')}".rstrip())
        return 1
    return 0


def cancel(args: argparse.Namespace) -> int:
    """Cancel a job (``DELETE /v1/jobs/{id}``): it stops, and its files and results are deleted."""
    with ServiceClient(args.url, api_key=args.api_key, retries=args.retries) as client:
        job = client.request("DELETE", f"/v1/jobs/{args.job}").json()
    _say(f"job {job['id']} {job['state']} and deleted ({job['counts']['done']} of {job['counts']['total']} files done)")
    return 0


def _print_answer(name: str, result: dict[str, Any]) -> None:
    structure = result["structure"]
    print(f"{name}: {structure['reduced_formula']} ({structure['n_sites']} sites)")
    width = max((len(prop) for prop in result["predictions"]), default=0)
    for prop, pred in result["predictions"].items():
        sigma = f" ± {pred['sigma']:.4f}" if pred.get("sigma") is not None else ""
        print(f"  {prop:<{width}}  {pred['value']:>10.4f}{sigma} {pred['unit']:<8} ({pred['model']}@{pred['version']})")
    for warning in result.get("warnings", []):
        print(f"  warning {warning['code']}: {warning['detail']}")


def predict(args: argparse.Namespace) -> int:
    """Predict each file with ``/v1/predict``; a failed file is reported and the others still run."""
    paths = [Path(name) for name in args.files]
    for path in paths:
        if not path.is_file():
            raise ServiceError("file_not_found", f"{path}: no such file")
    params = {"models": args.models} if args.models else {}
    answers: list[dict[str, Any]] = []
    failed = 0
    with ServiceClient(args.url, api_key=args.api_key, retries=args.retries) as client:
        for path in paths:

            def body(path: Path = path) -> dict[str, Any]:
                return {"files": {"file": (path.name, path.read_bytes(), "chemical/x-cif")}}

            try:
                result = client.request("POST", "/v1/predict", params=params, body=body).json()
            except ServiceError as exc:
                if exc.code == "unreachable":
                    raise
                failed += 1
                _say(f"{path}: {exc.code}: {exc.detail}")
                answers.append({"filename": str(path), "ok": False, "error": {"code": exc.code, "detail": exc.detail}})
                continue
            answers.append({"filename": str(path), "ok": True, **result} if len(paths) > 1 else result)
            if not args.json:
                _print_answer(path.name if len(paths) == 1 else str(path), result)
    if args.json:
        print(json.dumps(answers if len(paths) > 1 else answers[0], indent=2))
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("CRYSTAL_URL", DEFAULT_URL), help="service URL (CRYSTAL_URL)")
    common.add_argument("--api-key", default=os.environ.get("CRYSTAL_API_KEY"), help="X-API-Key (CRYSTAL_API_KEY)")
    common.add_argument("--models", help="comma-separated model names (default: the service's defaults)")
    common.add_argument("--retries", type=int, default=8, help="retries on connection errors (default 8)")
    parser = argparse.ArgumentParser(
        prog="crystal-predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("screen", parents=[common], help="screen a folder of CIFs (or an archive) as a job")
    s.add_argument("path", help="folder searched recursively for *.cif, or a .zip / .tar.gz archive")
    s.add_argument("--out", default="results.csv", help="results file: .csv, .json or .ndjson (default results.csv)")
    s.add_argument("--job", help="follow and download this existing job instead of submitting")
    s.add_argument(
        "--new", action="store_true", help="submit a new job even if the same files and options were submitted before"
    )
    s.add_argument("--poll", type=float, default=1.0, help="seconds between progress polls (default 1)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=screen)
    p = sub.add_parser("predict", parents=[common], help="predict a few CIFs, one request each")
    p.add_argument("files", nargs="+", metavar="FILE", help="CIF (or other structure) files")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the service's JSON answer (several files: an array, items as in /v1/predict/batch)",
    )
    p.set_defaults(func=predict)
    c = sub.add_parser("cancel", parents=[common], help="cancel a job and delete it with its results")
    c.add_argument("job", help="the job's id (screen prints it)")
    c.set_defaults(func=cancel)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``crystal-predict`` with ``argv`` (default ``sys.argv[1:]``); the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ServiceError as exc:
        _say(f"error: {exc.code}: {exc.detail}")
        return 1
    except OSError as exc:  # a file that vanished or cannot be read or written: one line, no traceback
        _say(f"error: {exc.filename or ''}: {exc.strerror or exc}".replace("error: : ", "error: "))
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
