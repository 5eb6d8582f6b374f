"""``run(config)``: the whole chain, stage by stage, each a library call with its typed config.

extract -> mine-pairs -> align -> embed -> [raw baseline] -> build-codebook -> index -> report
(-> evaluate-retrieval). A stage whose output exists and matches its config (and its
upstream's) is skipped, a changed one re-runs with everything downstream, and a killed one
resumes (see :class:`StageRunner`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .._progress import Progress, as_progress
from . import _stages as stages
from ._config import PipelineConfig, load_config
from ._runner import StageOutcome, StageRunner

__all__ = ["run", "coclick_agreement"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Paths:
    """Where each stage writes, under the workdir."""

    workdir: Path

    @property
    def features(self) -> Path:
        return self.workdir / "features"

    @property
    def pairs(self) -> Path:
        return self.workdir / "pairs.parquet"

    @property
    def heldout(self) -> Path:
        return self.workdir / "heldout_pairs.parquet"

    @property
    def alignment(self) -> Path:
        return self.workdir / "alignment"

    def embeddings(self, variant: str, sharded: bool = False) -> Path:
        """One Parquet file, or with the ray engine a directory of Parquet shards."""
        return self.workdir / "embeddings" / (variant if sharded else f"{variant}.parquet")

    def tokenizer(self, variant: str) -> Path:
        return self.workdir / ("tokenizer" if variant == "aligned" else f"tokenizer_{variant}")

    def lcrec(self, variant: str) -> Path:
        return self.workdir / f"{self.tokenizer(variant).name}.index.json"

    @property
    def report_json(self) -> Path:
        return self.workdir / "report.json"

    @property
    def report_html(self) -> Path:
        return self.workdir / "report.html"

    def retrieval(self, variant: str) -> Path:
        return self.workdir / f"retrieval_{variant}.json"


class _Chain:
    """The stages of one run, sharing the config, the paths, the records and the callbacks."""

    def __init__(self, cfg: PipelineConfig, progress: Progress | None, on_stage: Callable[[str, StageOutcome | None], None] | None):
        self.cfg = cfg
        self.p = _Paths(cfg.workdir)
        self.runner = StageRunner(cfg.workdir)
        self.progress = progress
        self.on_stage = on_stage or (lambda name, outcome: None)
        self.catalog, self.inter = str(cfg.catalog), str(cfg.interactions)
        self.overall = None  # the "pipeline" progress task, advanced per stage

    def n_stages(self) -> int:
        """How many stages this run goes through (for the overall progress)."""
        variants = 2 if self.cfg.baseline else 1
        retrieval = (variants if self.cfg.retrieval_baseline else 1) if self.cfg.run_retrieval else 0
        return 4 + (variants - 1) + 2 * variants + 1 + retrieval

    def stage(self, name: str, conf: dict[str, Any], outputs, fn, upstream=()) -> StageOutcome:
        self.on_stage(name, None)
        out = self.runner.run(name, conf, outputs=outputs, fn=fn, upstream=upstream)
        logger.info("stage %s: %s in %.1fs", name, out.status, out.seconds)
        self.on_stage(name, out)
        if self.overall is not None:
            self.overall.advance(1, stage=name)
        return out

    # ---- the stages ------------------------------------------------------------------
    def extract(self) -> None:
        from ..features import FEATURE_STORE

        c = self.cfg.extract
        self.stage("extract", {"catalog": self.catalog, **_without_engine(c)}, [FEATURE_STORE.manifest_path(self.p.features)],
                   lambda mode: stages.extract(self.catalog, self.p.features, c, overwrite=mode == "fresh", progress=self.progress).to_dict())

    def mine_pairs(self) -> None:
        c = self.cfg.mine_pairs
        self.stage("mine-pairs", {"interactions": self.inter, **c.to_flat_dict()}, [self.p.pairs, self.p.heldout],
                   lambda mode: stages.mine_pairs(self.inter, self.p.pairs, c, heldout_out=self.p.heldout, overwrite=True))

    def align(self) -> None:
        from ..alignment import is_alignment_complete

        c, d = self.cfg.align, self.p.alignment

        def fn(mode):
            # held-out recall@k is measured on each user's (validation, test) items: pairs that
            # mining never saw, not on a slice of the mined pairs
            finished = is_alignment_complete(d)
            return stages.align(self.p.features, self.p.pairs, d, c, catalog=self.catalog, eval_pairs=self.p.heldout,
                                overwrite=mode == "fresh" or finished, progress=self.progress)

        self.stage("align", {**c.to_flat_dict(), "eval_pairs": "heldout"}, [d / "model.safetensors"], fn, upstream=("extract", "mine-pairs"))

    def embed(self) -> list[tuple[str, Path, str]]:
        """The embeddings to tokenize: ``(variant, path, the stage that wrote it)``."""
        from ..engines import engine_for

        c = self.cfg.embed
        sharded = engine_for(c.execution).sharded_output
        out = self.p.embeddings("aligned", sharded=sharded)
        from ..engines import SHARDS

        done = SHARDS.manifest_path(out) if sharded else out
        self.stage("embed", _without_engine(c), [done],
                   lambda mode: stages.embed(self.p.features, self.p.alignment, out, c, overwrite=True, progress=self.progress),
                   upstream=("align",))
        variants = [("aligned", out, "embed")]
        if self.cfg.baseline:
            raw = self.p.embeddings("raw")
            self.stage("embed-raw", {}, [raw], lambda mode: stages.raw_embeddings(self.p.features, raw), upstream=("extract",))
            variants.append(("raw", raw, "embed-raw"))
        return variants

    def tokenize(self, variant: str, emb: Path, upstream: str) -> None:
        from ..build import TOKENIZER
        from ..indexer.policies import get_policy

        tok, cb, ix = self.p.tokenizer(variant), self.cfg.codebook, self.cfg.index
        # the codebook stage indexes as build-codebook does (suffixes by row, fingerprints), so the
        # pipeline, the CLI and Python give the same SIDs; the index stage re-reads the vectors
        # only for a policy that needs them (reassign)
        self.stage(f"build-codebook[{variant}]", cb.to_flat_dict(), [TOKENIZER.manifest_path(tok)],
                   lambda mode: stages.build_codebook(emb, tok, replace(cb, index=True), categories=self.catalog,
                                                      category_input=self.cfg.report, overwrite=True, progress=self.progress),
                   upstream=(upstream,))
        vectors = emb if get_policy(ix.policy).needs_vectors else None
        self.stage(f"index[{variant}]", ix.to_flat_dict(), [self.p.lcrec(variant)],
                   lambda mode: stages.index(tok, ix, embeddings=vectors, export_lcrec=self.p.lcrec(variant)),
                   upstream=(f"build-codebook[{variant}]",))

    def report(self, variants: list[str]) -> None:
        toks = [self.p.tokenizer(v) for v in variants]

        def fn(mode):
            from ..io import atomic_write_json

            coclick = {d.name: coclick_agreement(d, self.p.heldout) for d in toks}
            rep = stages.report(toks, self.cfg.report, categories=self.catalog, html=self.p.report_html, extra=self.report_extra(coclick))
            rep["coclick_agreement"] = coclick
            atomic_write_json(self.p.report_json, rep)
            return {"report": str(self.p.report_json), "html": str(self.p.report_html)}

        self.stage("report", self.cfg.report.to_flat_dict(), [self.p.report_json, self.p.report_html], fn,
                   upstream=tuple(f"index[{v}]" for v in variants))

    def report_extra(self, coclick: dict[str, Any], retrieval: dict[str, Any] | None = None) -> dict[str, Any]:
        """The pipeline's own numbers for the HTML report: the alignment's held-out evaluation,
        co-click agreement per tokenizer and, once it ran, retrieval on the test users."""
        extra = {"alignment: held-out evaluation": _alignment_eval(self.p.alignment) or {}}
        extra.update({f"co-click agreement: {k}": v for k, v in coclick.items() if isinstance(v, dict)})
        for v, res in (retrieval or {}).items():
            test = res.get("test") if isinstance(res, dict) else None
            if isinstance(test, dict):
                extra[f"retrieval ({v} SIDs): test users"] = test
        return extra

    def report_with_retrieval(self, variants: list[str], retrieval: dict[str, Any]) -> None:
        """Re-draw the HTML report with the retrieval numbers (retrieval runs after the report
        stage; report.json keeps them out, the run's summary has them)."""
        toks = [self.p.tokenizer(v) for v in variants]
        coclick = json.loads(self.p.report_json.read_text()).get("coclick_agreement") or {}
        stages.report(toks, self.cfg.report, categories=self.catalog, html=self.p.report_html, extra=self.report_extra(coclick, retrieval))

    def retrieval(self, variants: list[str]) -> dict[str, Any]:
        results = {}
        c = self.cfg.retrieval
        for v in variants:
            if v != "aligned" and not self.cfg.retrieval_baseline:
                continue
            out = self.p.retrieval(v)
            self.stage(f"evaluate-retrieval[{v}]", c.to_flat_dict(), [out],
                       lambda mode, v=v, out=out: _brief(stages.evaluate_retrieval(self.p.tokenizer(v), self.inter, c, out=out, progress=self.progress)),
                       upstream=(f"index[{v}]",))
            results[v] = json.loads(out.read_text())
        return results


def _without_engine(cfg) -> dict[str, Any]:
    """A stage's settings minus where it runs: the engines write the same bytes, so switching
    engine does not redo a finished stage."""
    from .._config import settings_of
    from ..engines import EngineConfig

    skip = {s.name for s in settings_of(EngineConfig)}
    return {k: v for k, v in cfg.to_flat_dict().items() if k not in skip}


def _brief(res: dict[str, Any]) -> dict[str, Any]:
    """What a stage record keeps of a retrieval result (the full result is its output file)."""
    return {k: res[k] for k in ("test", "valid", "n_items") if k in res}


def run(config: str | Path | dict[str, Any] | PipelineConfig, *, progress: Progress | None = None,
        on_stage: Callable[[str, StageOutcome | None], None] | None = None) -> dict[str, Any]:
    """Run the chain; returns a JSON-ready summary (stages with their status and seconds,
    tokenizer metrics, the alignment's held-out evaluation, co-click agreement, retrieval).

    ``config``: a TOML / JSON path, a dict or a :class:`PipelineConfig`; it is validated whole
    before any compute. ``progress``: shows long stages (see :mod:`tokenizer_kit._progress`).
    ``on_stage(name, outcome)`` is called when a stage starts (``outcome`` None) and ends.
    """
    cfg = load_config(config)
    with _workdir(cfg.workdir):
        t0 = time.perf_counter()
        chain = _Chain(cfg, progress, on_stage)
        return _run_chain(chain, cfg, progress, t0)


@contextlib.contextmanager
def _workdir(workdir: Path) -> Iterator[None]:
    """The run's working directory, made if missing; a run that fails before any stage left
    something in it removes the directory it made (a failed first stage leaves no trace)."""
    made = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if made:
            with contextlib.suppress(OSError):  # not empty: a stage's output (resumable) stays
                workdir.rmdir()
        raise


def _run_chain(chain: "_Chain", cfg: PipelineConfig, progress: Progress | None, t0: float) -> dict[str, Any]:
    with as_progress(progress).task("pipeline", total=chain.n_stages(), unit="stage") as chain.overall:
        chain.extract()
        chain.mine_pairs()
        chain.align()
        variants = chain.embed()
        for variant, emb, upstream in variants:
            chain.tokenize(variant, emb, upstream)
        names = [v for v, _, _ in variants]
        chain.report(names)
        retrieval = chain.retrieval(names) if cfg.run_retrieval else {}
        if retrieval:
            chain.report_with_retrieval(names, retrieval)
    return _summary(chain, time.perf_counter() - t0, retrieval)


def _summary(chain: _Chain, seconds: float, retrieval: dict[str, Any]) -> dict[str, Any]:
    rep = json.loads(chain.p.report_json.read_text())
    return {
        "workdir": str(chain.cfg.workdir),
        "config": None if chain.cfg.source is None else str(chain.cfg.source),
        "seconds": seconds,
        "stages": [{"stage": o.name, "status": o.status, "seconds": o.seconds} for o in chain.runner.outcomes],
        "report": str(chain.p.report_json),
        "html": str(chain.p.report_html),
        "tokenizers": {
            t["name"]: {k: t.get(k) for k in ("n_items", "reconstruction_relative", "collision_rate", "unique_sids", "category_nmi")}
            | {"entropy_normalized": [round(lv["entropy_normalized"], 4) for lv in t["levels"]]}
            for t in rep["tokenizers"]
        },
        "tokenizer_reports": rep["tokenizers"],
        "coclick_agreement": rep.get("coclick_agreement"),
        "alignment": _alignment_eval(chain.p.alignment),
        "retrieval": retrieval or None,
    }


def _alignment_eval(align_dir: Path) -> dict | None:
    """The held-out evaluation the align stage wrote, if it ran."""
    from ..alignment import read_alignment_eval

    try:
        return read_alignment_eval(align_dir)
    except (OSError, ValueError, KeyError, TypeError):  # no alignment (a pipeline without one), or unreadable
        return None


def coclick_agreement(tokenizer: Path, heldout: Path) -> dict[str, Any]:
    """Share of held-out co-clicked pairs (validation item, test item of a user) whose SIDs
    share the level-1 code, and the full prefix of length 2."""
    import numpy as np
    import pyarrow.parquet as pq

    from ..build import SemanticTokenizer

    tok = SemanticTokenizer.from_pretrained(tokenizer, verify=False)
    pos = {str(i): r for r, i in enumerate(tok.item_ids.tolist())}
    t = pq.read_table(heldout)
    a = [pos.get(str(i)) for i in t.column("item_a").to_pylist()]
    b = [pos.get(str(i)) for i in t.column("item_b").to_pylist()]
    keep = [(x, y) for x, y in zip(a, b) if x is not None and y is not None and x != y]
    if not keep:
        return {"pairs": 0}
    ia, ib = np.array(keep).T
    c = tok.codes
    return {
        "pairs": len(keep),
        "same_level1": float((c[ia, 0] == c[ib, 0]).mean()),
        "same_prefix2": float((c[ia, :2] == c[ib, :2]).all(1).mean()) if c.shape[1] > 1 else None,
        # what a random pair of items would give
        "same_level1_random": float(sum((np.bincount(c[:, 0]) / len(c)) ** 2)),
    }
