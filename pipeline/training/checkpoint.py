"""Resumable long stages.

Each long stage keeps its checkpoints in `checkpoints/<stage>[/<name>]`. That folder is deliberately
not a DVC output: DVC deletes a stage's outputs before rerunning it and would report them missing in a
fresh clone, while this is scratch state that must survive a crash and nothing else. The folder
holds a `run.json` with the fingerprint of what the stage is computing (its params and inputs): a
rerun resumes only a checkpoint of the same fingerprint, anything else is cleared first. When the
stage completes, the checkpoints are removed and `run.json` says `complete`, so a checkpoint is never
mistaken for the final artifact (which is written elsewhere, atomically).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE = "run.json"


def fingerprint(config: Any, inputs: Iterable[Path] = ()) -> str:
    """Hash of a stage's configuration and the contents of its input artifacts: a checkpoint is resumed
    only against exactly the inputs it was trained on (a retrained teacher has the same file sizes)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for root in inputs:
        root = Path(root)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            digest.update(f"{f.relative_to(root.parent)}:{f.stat().st_size}".encode())
            with f.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


class CheckpointDir:
    """The checkpoint folder of one stage run."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder = Path(folder)
        self.fingerprint = fingerprint

    def start(self) -> bool:
        """Prepare for a run; return True when an unfinished run of the same fingerprint can resume."""
        state = self._state()
        if state.get("fingerprint") == self.fingerprint and not state.get("complete"):
            return True
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        self._write({"fingerprint": self.fingerprint, "complete": False})
        return False

    def complete(self) -> None:
        """Drop the checkpoints, keep a marker that the run finished."""
        for child in self.folder.iterdir():
            if child.name != STATE:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        self._write({"fingerprint": self.fingerprint, "complete": True})

    def latest_trainer_checkpoint(self) -> str | None:
        """The newest `checkpoint-<step>` folder HF Trainer wrote here, if any."""
        steps = [(int(m.group(1)), p) for p in self.folder.glob("checkpoint-*")
                 if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "trainer_state.json").is_file()]
        return str(max(steps)[1]) if steps else None

    def _state(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.folder / f".{STATE}.tmp"
        tmp.write_text(json.dumps(state) + "\n", encoding="utf-8")
        tmp.replace(self.folder / STATE)
