"""Pipeline config: TOML, JSON, a dict or a :class:`PipelineConfig`, validated whole before any compute.

One table per stage; its keys are the fields of the stage's config dataclass (the same names
as the verb's options, with ``_`` for ``-``)::

    workdir = "out"          # relative to the config file
    seed = 0                 # every stage's seed unless its table sets one (unset: each stage's own default)
    [data]
    catalog = "items.parquet"
    interactions = "inter.parquet"
    [align]
    preset = "no-caption"    # a named preset (list_presets("align")), then these keys on top
    steps = 1500
    [codebook]
    codebook_size = 256
    [baseline]
    enabled = true           # also tokenize mean-pooled raw features, for comparison
    [retrieval]
    enabled = true           # run the companion's downstream check (baseline = true: also on raw)
    epochs = 3

Every problem (unknown keys, wrong types, out-of-range values, missing input files, options
that conflict) is reported at once in one error, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config import parse_layers, read_config_file
from ..errors import TokenizerKitError, UsageError
from ._stage_configs import AlignStageConfig, CodebookConfig, EmbedConfig, ExtractStageConfig, MinePairsConfig, RetrievalStageConfig
from ._verb_configs import IndexStageConfig, ReportConfig

__all__ = ["STAGES", "PipelineConfig", "load_config", "stage_config", "read_config_file"]

# stage table -> (its config class, the CLI verb that runs it alone)
STAGES: dict[str, tuple[type, str]] = {
    "extract": (ExtractStageConfig, "extract"),
    "mine_pairs": (MinePairsConfig, "mine-pairs"),
    "align": (AlignStageConfig, "align"),
    "embed": (EmbedConfig, "embed"),
    "codebook": (CodebookConfig, "build-codebook"),
    "index": (IndexStageConfig, "index"),
    "report": (ReportConfig, "report"),
    "retrieval": (RetrievalStageConfig, "evaluate-retrieval"),
}
_TOP = {"workdir", "seed", "data", "baseline", *STAGES}
_SWITCHES = {"baseline": {"enabled"}, "retrieval": {"enabled", "baseline"}}


@dataclass
class PipelineConfig:
    """The whole chain's settings. Built from a file by :func:`load_config`, which also applies
    the top-level ``seed`` to every stage whose table sets none (None: each stage keeps its
    config class's default, the one its verb and the Python API use); built in Python, each
    stage's config is used as given."""

    catalog: Path
    interactions: Path
    workdir: Path = Path("pipeline_out")
    seed: int | None = None
    extract: ExtractStageConfig = field(default_factory=ExtractStageConfig)
    mine_pairs: MinePairsConfig = field(default_factory=MinePairsConfig)
    align: AlignStageConfig = field(default_factory=AlignStageConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    codebook: CodebookConfig = field(default_factory=CodebookConfig)
    index: IndexStageConfig = field(default_factory=IndexStageConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    retrieval: RetrievalStageConfig = field(default_factory=RetrievalStageConfig)
    baseline: bool = True  # also tokenize mean-pooled raw features, for comparison
    run_retrieval: bool = False  # run the companion's downstream evaluation
    retrieval_baseline: bool = False  # ... on the raw-feature tokenizer too
    source: Path | None = None  # the file it was read from, if any

    def errors(self) -> list[str]:
        """Problems of a built config: each stage's own checks, input files, conflicts."""
        errs = []
        for name, (cls, _) in STAGES.items():
            cfg = getattr(self, name)
            if not isinstance(cfg, cls):
                errs.append(f"[{name}] must be a {cls.__name__}, got {type(cfg).__name__}")
                continue
            errs += [f"[{name}] {e}" for e in cfg.all_errors()]
        for key in ("catalog", "interactions"):
            p = Path(getattr(self, key))
            if not p.exists():
                errs.append(f"[data] {key} {p} does not exist")
        if self.retrieval_baseline and not self.baseline:
            errs.append("[retrieval] baseline = true needs the raw baseline tokenizer; set [baseline] enabled = true")
        if self.retrieval_baseline and not self.run_retrieval:
            errs.append("[retrieval] baseline = true has no effect without enabled = true")
        if isinstance(self.codebook, CodebookConfig):
            for key in ("checkpoint_dir", "resume_from"):
                if self.codebook.quantizer.get(key) and self.baseline:
                    errs.append(f"[codebook] {key} would be shared by the aligned and the raw tokenizer; "
                                "set [baseline] enabled = false to use it")
            resume = self.codebook.quantizer.get("resume_from")
            if resume and not Path(resume).exists():
                errs.append(f"[codebook] resume_from {resume} does not exist")
        return errs

    def validate(self) -> "PipelineConfig":
        errs = self.errors()
        if errs:
            where = f" {self.source}" if self.source else ""
            raise UsageError(f"invalid pipeline config{where}: " + "; ".join(errs))
        return self

    def to_dict(self) -> dict[str, Any]:
        """A dict :func:`load_config` reads back (paths absolute)."""
        d: dict[str, Any] = {"workdir": str(self.workdir), **({"seed": self.seed} if self.seed is not None else {}),
                             "data": {"catalog": str(self.catalog), "interactions": str(self.interactions)}}
        for name in STAGES:
            d[name] = getattr(self, name).to_flat_dict()
        d["baseline"] = {"enabled": self.baseline}
        d["retrieval"].update(enabled=self.run_retrieval, baseline=self.retrieval_baseline)
        return d


def stage_config(stage: str, *layers: dict[str, Any] | None, preset: str | None = None):
    """The config of ``stage`` from its class defaults, then ``preset``, then each of ``layers``
    (a later layer wins); a ``preset`` key inside a layer also picks one. Raises one error
    naming every problem."""
    cls = STAGES[stage][0] if stage in STAGES else None
    if cls is None:
        raise UsageError(f"unknown stage {stage!r}; stages are {list(STAGES)}")
    cfg, errs = parse_layers(cls, stage, layers, preset)
    if errs:
        from .._config import config_error

        raise config_error(f"invalid {cls.label} config: " + "; ".join(errs), *cls._named(errs), error_type=cls.error_type, usage=True)
    return cfg


def _resolve(base: Path, v: Any) -> Path:
    p = Path(v).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _read_source(source, base_dir) -> tuple[dict[str, Any], Path, Path | None]:
    """(the raw dict, the directory relative paths start from, the file it came from)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        return read_config_file(path), path.parent, path
    if isinstance(source, dict):
        return source, Path(base_dir) if base_dir is not None else Path.cwd(), None
    raise TokenizerKitError(f"a pipeline config is a file path, a dict or a PipelineConfig, got {type(source).__name__}")


def _top_level(raw: dict[str, Any], base: Path, errs: list[str]) -> dict[str, Any]:
    """workdir, seed and the [data] paths, checked; problems go to ``errs``."""
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        errs.append(f"unknown top-level keys {unknown} (known: {sorted(_TOP)})")
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        errs.append(f"seed: expected an integer >= 0, got {seed!r}")
        seed = None
    workdir = raw.get("workdir", "pipeline_out")
    if not isinstance(workdir, (str, Path)):
        errs.append(f"workdir: expected a path, got {workdir!r}")
        workdir = "pipeline_out"
    out: dict[str, Any] = {"seed": seed, "workdir": _resolve(base, workdir)}
    data = raw.get("data", {})
    if not isinstance(data, dict):
        errs.append("[data] must be a table with catalog and interactions")
        data = {}
    for key in ("catalog", "interactions"):
        if not isinstance(data.get(key), (str, Path)) or not data.get(key):
            errs.append(f"[data] needs {key} = PATH")
        else:
            out[key] = _resolve(base, data[key])
            if not out[key].exists():
                errs.append(f"[data] {key} {out[key]} does not exist")
    extra = sorted(set(data) - {"catalog", "interactions"})
    if extra:
        errs.append(f"[data] has unknown keys {extra} (known: catalog, interactions)")
    return out


def _switches(raw: dict[str, Any], errs: list[str]) -> dict[str, bool]:
    """[baseline] enabled, [retrieval] enabled / baseline."""
    vals: dict[tuple[str, str], Any] = {}
    for table, keys in _SWITCHES.items():
        sec = raw.get(table, {})
        if not isinstance(sec, dict):  # e.g. `baseline = true`: a table name used as a key
            if table not in STAGES:  # a stage's table is reported by _stage_tables
                val = str(sec).lower() if isinstance(sec, bool) else repr(sec)
                errs.append(f"{table} = {val}: {table!r} is a table, not a top-level key; write [{table}] with "
                            f"{' and '.join(f'{k} = true or false' for k in sorted(keys))} "
                            f"(top-level keys: {', '.join(sorted(_TOP - set(STAGES) - set(_SWITCHES)))} and the stage tables)")
            sec = {}
        if table not in STAGES and set(sec) - keys:
            errs.append(f"[{table}] has unknown keys {sorted(set(sec) - keys)} (known: {sorted(keys)})")
        for k in keys:
            v = sec.get(k) if isinstance(sec, dict) else None
            if v is not None and not isinstance(v, bool):
                errs.append(f"[{table}] {k}: expected true or false, got {v!r}")
                v = None
            vals[(table, k)] = v
    base = vals[("baseline", "enabled")]
    return {"baseline": True if base is None else base, "run_retrieval": bool(vals[("retrieval", "enabled")]),
            "retrieval_baseline": bool(vals[("retrieval", "baseline")])}


def _stage_tables(raw: dict[str, Any], seed: int | None, errs: list[str]) -> dict[str, Any]:
    """Each stage's config from its table (the top-level seed, if set, unless the table sets one)."""
    stages = {}
    for name, (cls, _verb) in STAGES.items():
        sec = raw.get(name, {})
        if not isinstance(sec, dict):
            errs.append(f"[{name}] must be a table of settings")
            continue
        sec = {k: v for k, v in sec.items() if k not in _SWITCHES.get(name, ())}
        has_seed = any(s.name == "seed" for s in cls.cli_settings())
        defaults = {"seed": seed} if has_seed and seed is not None and "seed" not in sec else {}
        cfg, serrs = parse_layers(cls, name, [defaults, sec])
        errs += [f"[{name}] {e}" for e in serrs]
        stages[name] = cfg
    return stages


def load_config(source: str | Path | dict[str, Any] | PipelineConfig, *, base_dir: str | Path | None = None) -> PipelineConfig:
    """Read and validate a pipeline config (a file path, a dict or a :class:`PipelineConfig`).

    Relative paths resolve against the file's directory (``base_dir`` or the working
    directory for a dict). Every problem is reported at once, as one error, before any compute.
    """
    if isinstance(source, PipelineConfig):
        return source.validate()
    raw, base, path = _read_source(source, base_dir)
    errs: list[str] = []
    top = _top_level(raw, base, errs)
    switches = _switches(raw, errs)
    stages = _stage_tables(raw, top["seed"], errs)
    if errs:
        where = f" {path}" if path is not None else ""
        raise UsageError(f"invalid pipeline config{where}: " + "; ".join(errs))
    return PipelineConfig(**top, **switches, **stages, source=path).validate()
