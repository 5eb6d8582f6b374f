"""Stage bookkeeping for the pipeline: skip a stage whose output exists and matches its config.

Each finished stage writes ``<workdir>/stages/<name>.json`` through the manifest module
(``io.write_record``: format and package version, sealed, atomic) with a hash of its config
chained with its upstream stages' hashes. On the next run a stage is

- **skipped** when its record's hash matches and its outputs exist;
- **restarted fresh** when a record exists with another hash (config or upstream changed);
- **resumed** when there is no record but outputs exist (a killed run): the stage's own
  resume logic (resumable shards, training checkpoints) picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ArtifactError
from ..io import ArtifactKind, read_record, write_record

__all__ = ["STAGE_RECORD", "StageRunner", "StageOutcome", "config_hash"]

logger = logging.getLogger(__name__)

# a one-file manifest per finished stage (``stages/<name>.json``): its config hash, upstream,
# outputs and what the stage returned
STAGE_RECORD = ArtifactKind(
    name="stage-record",
    format_version=1,
    sealed_since=1,
    what="pipeline stage record",
    fix="the stage runs again",
)


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StageOutcome:
    name: str
    status: str  # "ran", "resumed", "skipped"
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


class StageRunner:
    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir)
        self.records = self.workdir / "stages"  # made by the first stage that finishes: a failed run leaves none
        self._hashes: dict[str, str] = {}
        self.outcomes: list[StageOutcome] = []

    def _record_path(self, name: str) -> Path:
        return self.records / f"{name}.json"

    def record(self, name: str) -> dict[str, Any] | None:
        """The stage's record, or None (none yet, or unreadable: the stage then runs again)."""
        p = self._record_path(name)
        if not p.exists():
            return None
        try:
            return read_record(p, STAGE_RECORD)
        except ArtifactError as e:
            logger.warning("%s; the stage will run again", e)
            return None

    def run(
        self,
        name: str,
        config: dict[str, Any],
        *,
        outputs: Sequence[Path],
        fn: Callable[[str], dict[str, Any]],
        upstream: Sequence[str] = (),
    ) -> StageOutcome:
        """Run ``fn(mode)`` unless the stage is up to date; ``mode`` is "fresh" or "resume"."""
        h = config_hash({"stage": name, "config": config, "upstream": [self._hashes.get(u) for u in upstream]})
        self._hashes[name] = h
        rec = self.record(name)
        outs_exist = all(Path(o).exists() for o in outputs)
        if rec is not None and rec.get("hash") == h and outs_exist:
            out = StageOutcome(name, "skipped", 0.0, rec.get("info", {}))
            self.outcomes.append(out)
            logger.info("stage %s is up to date; skipped", name)
            return out
        mode = "resume" if (rec is None and any(Path(o).exists() for o in outputs)) else "fresh"
        if rec is not None:
            self._record_path(name).unlink()
        t0 = time.perf_counter()
        info = fn(mode) or {}
        secs = time.perf_counter() - t0
        self.records.mkdir(parents=True, exist_ok=True)
        write_record(
            self._record_path(name),
            STAGE_RECORD,
            {"stage": name, "hash": h, "config": config, "upstream": list(upstream), "seconds": secs,
             "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "outputs": [str(o) for o in outputs],
             "info": _jsonable(info)},
        )
        out = StageOutcome(name, "resumed" if mode == "resume" else "ran", secs, info)
        self.outcomes.append(out)
        return out


def _jsonable(obj: Any) -> Any:
    """``obj`` with what JSON cannot hold (numpy scalars, paths) turned into plain values."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
