"""Pipeline config: TOML or JSON, one table per stage; validated whole before any compute.

Stage tables hold the options of the matching CLI verb (``text_fields = "title,brand"`` is
``--text-fields title,brand``; ``true`` is a flag; lists are joined with commas), so every
option a verb has is available in the pipeline with the same name and meaning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TokenizerKitError

__all__ = ["PipelineConfig", "load_pipeline_config", "STAGES"]

# stage table -> CLI verb it configures
STAGES = {
    "extract": "extract",
    "mine_pairs": "mine-pairs",
    "align": "align",
    "embed": "embed",
    "codebook": "build-codebook",
    "index": "index",
    "report": "report",
    "retrieval": "evaluate-retrieval",
}
_TOP = {"workdir", "seed", "data", "baseline", *STAGES}


@dataclass
class PipelineConfig:
    path: Path
    workdir: Path
    catalog: Path
    interactions: Path
    seed: int = 0
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline: bool = True  # also tokenize mean-pooled raw features, for comparison
    retrieval: bool = False  # run the companion's downstream evaluation
    retrieval_baseline: bool = False  # ... on the raw-feature tokenizer too

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.stages.get(name, {}))


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise TokenizerKitError(f"pipeline config {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            return json.loads(text)
        import tomllib

        return tomllib.loads(text)
    except (json.JSONDecodeError, ValueError) as e:
        raise TokenizerKitError(f"{path}: cannot parse ({e}); expected TOML (or JSON for *.json)") from None


def load_pipeline_config(path: str | Path, *, option_names: dict[str, set[str]] | None = None) -> PipelineConfig:
    """Read and validate; every problem is reported at once. ``option_names`` maps a CLI verb
    to its option names (``text_fields`` style) so unknown keys are caught before any compute."""
    path = Path(path)
    raw = _read(path)
    errs: list[str] = []
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        errs.append(f"unknown top-level keys {unknown} (known: {sorted(_TOP)})")
    base = path.parent
    data = raw.get("data", {})
    paths = {}
    for key in ("catalog", "interactions"):
        v = data.get(key)
        if not v:
            errs.append(f"[data] needs {key} = PATH")
            continue
        p = (base / v).resolve() if not Path(v).is_absolute() else Path(v)
        if not p.exists():
            errs.append(f"[data] {key} {p} does not exist")
        paths[key] = p
    stages = {}
    for name, verb in STAGES.items():
        sec = raw.get(name, {})
        if not isinstance(sec, dict):
            errs.append(f"[{name}] must be a table of options")
            continue
        sec = dict(sec)
        if name == "retrieval":
            sec.pop("enabled", None)
            sec.pop("baseline", None)
        if option_names is not None and verb in option_names:
            bad = sorted(k for k in sec if k.replace("-", "_") not in option_names[verb])
            if bad:
                errs.append(f"[{name}] has unknown options {bad} for `tokenizer-kit {verb}` (known: {sorted(option_names[verb])})")
        stages[name] = sec
    if errs:
        raise TokenizerKitError(f"invalid pipeline config {path}: " + "; ".join(errs))
    wd = Path(raw.get("workdir", "pipeline_out"))
    return PipelineConfig(
        path=path,
        workdir=wd if wd.is_absolute() else (base / wd).resolve(),
        catalog=paths["catalog"],
        interactions=paths["interactions"],
        seed=int(raw.get("seed", 0)),
        stages=stages,
        baseline=bool(raw.get("baseline", {}).get("enabled", True)),
        retrieval=bool(raw.get("retrieval", {}).get("enabled", False)),
        retrieval_baseline=bool(raw.get("retrieval", {}).get("baseline", False)),
    )
