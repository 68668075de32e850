"""The small state file ``screen`` keeps beside ``--out``: which job it submitted for which inputs.

``results.csv`` gets ``results.csv.job.json`` while its job is unfinished or its download
incomplete: the job's id, the submission's key (:func:`~crystal_client._files.submission_key`)
and the service's URL. Run the same command again (after Ctrl-C, a lost connection, a reboot)
and ``screen`` finds the job there and follows it, without uploading anything; with the inputs
or options changed the key differs and a new job is submitted. The file is removed once the
results are complete. Without it (deleted, or another folder) the upload still carries the key,
and the service answers with the job it already has for it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Submission", "state_path", "read_state", "write_state", "clear_state"]


@dataclass(frozen=True)
class Submission:
    """A job ``screen`` submitted: its id, the submission key and the service it went to."""

    job: str
    key: str
    url: str


def state_path(out: Path) -> Path:
    """``OUT.job.json`` beside the results file."""
    return out.with_name(f"{out.name}.job.json")


def read_state(out: Path) -> Submission | None:
    """The submission recorded beside ``out``; ``None`` when there is none or it cannot be read."""
    try:
        data = json.loads(state_path(out).read_text(encoding="utf-8"))
        return Submission(job=str(data["job"]), key=str(data["key"]), url=str(data["url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(out: Path, submission: Submission) -> None:
    """Record ``submission`` beside ``out`` (written whole, then renamed into place)."""
    path = state_path(out)
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(submission), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def clear_state(out: Path) -> None:
    """Forget the submission (the results are complete)."""
    state_path(out).unlink(missing_ok=True)
