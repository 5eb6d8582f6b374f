"""``tokenizer-kit pipeline CONFIG``: extract -> mine-pairs -> align -> embed -> build-codebook
-> index -> report (-> evaluate-retrieval), each stage skipped when its output exists and
matches its config, resumed when a run was killed.

Each stage *is* the CLI verb of the same name, called in-process with the options of its
config table, so the pipeline and the verbs cannot drift apart.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ._common import OutputFormat, cli_command, emit_json, err_console, out_console, setup_logging

__all__ = ["register"]

_APP: typer.Typer | None = None


def _commands() -> dict[str, Any]:
    import typer.main

    return typer.main.get_command(_APP).commands  # type: ignore[arg-type]


def _option_map(command) -> dict[str, Any]:
    """``text_fields`` -> the click option ``--text-fields`` (and its ``--no-...`` twin)."""
    out = {}
    for p in command.params:
        for o in list(getattr(p, "opts", [])) + list(getattr(p, "secondary_opts", [])):
            if o.startswith("--"):
                out.setdefault(o[2:].replace("-", "_"), p)
    return out


def _flags(verb: str, section: dict[str, Any]) -> list[str]:
    opts = _option_map(_commands()[verb])
    args: list[str] = []
    for key, val in section.items():
        p = opts[key.replace("-", "_")]
        if isinstance(val, bool):
            if getattr(p, "is_flag", False) and p.secondary_opts:
                args.append(p.opts[0] if val else p.secondary_opts[0])
            elif val:
                args.append(p.opts[0])
            continue
        if isinstance(val, (list, tuple)):
            val = ",".join(str(v) for v in val)
        args += [p.opts[0], str(val)]
    return args


class StageFailed(Exception):
    pass


def _invoke(verb: str, args: list[str]) -> dict[str, Any]:
    """Run one verb in-process with ``--format json``; its JSON result, or StageFailed."""
    import typer.main

    cmd = typer.main.get_command(_APP)  # type: ignore[arg-type]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cmd.main([verb, *args, "--format", "json"], standalone_mode=False, prog_name="tokenizer-kit")
    if isinstance(code, int) and code != 0:
        raise StageFailed(f"`tokenizer-kit {verb}` exited {code}")
    text = buf.getvalue().strip()
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"output": text[-2000:]}


def _raw_embeddings(features: Path, out: Path) -> dict[str, Any]:
    """Mean-pooled raw token features per item (the unaligned baseline), as Parquet."""
    import numpy as np

    from ..alignment import pooled_features
    from ..features import FeatureStore
    from ..io import write_embeddings_parquet

    store = FeatureStore.open(features)
    x = pooled_features(store)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    write_embeddings_parquet(out, store.item_ids, x, metadata={"pooling": "mean of raw token features, L2-normalised"})
    return {"out": str(out), "n_items": len(store), "dim": int(x.shape[1])}


def _coclick_agreement(tokenizer: Path, heldout: Path) -> dict[str, Any]:
    """Share of held-out co-clicked pairs (validation item, test item of a user) whose SIDs
    share the level-1 code, and the full prefix of length 2."""
    import numpy as np
    import pyarrow.parquet as pq

    from .._tokenizer import SemanticTokenizer

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


def pipeline(
    config: Path = typer.Argument(..., help="Pipeline config (TOML, or JSON for *.json); see configs/office.toml."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json (the final summary on stdout)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Run the whole chain on a catalogue and its interactions; skips stages already done."""
    setup_logging(verbose)
    from ..pipeline import StageRunner, load_pipeline_config

    cmds = _commands()
    option_names = {verb: set(_option_map(c)) for verb, c in cmds.items()}
    cfg = load_pipeline_config(config, option_names=option_names)
    W = cfg.workdir
    W.mkdir(parents=True, exist_ok=True)
    runner = StageRunner(W)
    feats, pairs, held = W / "features", W / "pairs.parquet", W / "heldout_pairs.parquet"
    align_dir = W / "alignment"
    emb_aligned, emb_raw = W / "embeddings" / "aligned.parquet", W / "embeddings" / "raw.parquet"
    seed = ["--seed", str(cfg.seed)]
    catalog, inter = str(cfg.catalog), str(cfg.interactions)
    t_all = time.perf_counter()

    def stage(name, conf, outputs, fn, upstream=()):
        err_console.print(f"[bold cyan]stage[/] {escape(name)}", highlight=False)
        try:
            out = runner.run(name, conf, outputs=outputs, fn=fn, upstream=upstream)
        except StageFailed as e:
            raise typer.Exit(2) from e
        err_console.print(escape(f"  {name}: {out.status} in {out.seconds:.1f}s"), highlight=False)
        return out

    sec = cfg.section("extract")
    stage("extract", {"catalog": catalog, **sec}, [feats / "manifest.json"],
          lambda mode: _invoke("extract", [catalog, "--out", str(feats), *_flags("extract", sec), *(["--overwrite"] if mode == "fresh" else [])]))
    sec = cfg.section("mine_pairs")
    stage("mine-pairs", {"interactions": inter, **sec}, [pairs, held],
          lambda mode: _invoke("mine-pairs", [inter, "--out", str(pairs), "--heldout-out", str(held), "--overwrite", *_flags("mine-pairs", sec)]))
    sec = {**cfg.section("align")}
    sec.setdefault("seed", cfg.seed)

    def do_align(mode):
        # held-out recall@k is measured on each user's (validation, test) items: pairs that
        # mining never saw (the target), not on a slice of the mined pairs
        args = ["--features", str(feats), "--pairs", str(pairs), "--eval-pairs", str(held), "--catalog", catalog,
                "--out", str(align_dir), *_flags("align", sec)]
        finished = (align_dir / "config.json").exists() and not (align_dir / "checkpoint").exists()
        if mode == "fresh" or finished:
            args.append("--overwrite")
        return _invoke("align", args)

    stage("align", {**sec, "eval_pairs": "heldout"}, [align_dir / "model.safetensors"], do_align, upstream=("extract", "mine-pairs"))
    sec = cfg.section("embed")
    stage("embed", sec, [emb_aligned],
          lambda mode: _invoke("embed", ["--features", str(feats), "--alignment", str(align_dir), "--out", str(emb_aligned), "--overwrite", *_flags("embed", sec)]),
          upstream=("align",))
    variants = [("aligned", emb_aligned, "embed")]
    if cfg.baseline:
        stage("embed-raw", {}, [emb_raw], lambda mode: _raw_embeddings(feats, emb_raw), upstream=("extract",))
        variants.append(("raw", emb_raw, "embed-raw"))
    sec_cb, sec_ix = cfg.section("codebook"), cfg.section("index")
    tok_dirs = {}
    for name, emb, up in variants:
        tok = W / ("tokenizer" if name == "aligned" else f"tokenizer_{name}")
        tok_dirs[name] = tok
        stage(f"build-codebook[{name}]", sec_cb, [tok / "tokenizer.json"],
              lambda mode, emb=emb, tok=tok: _invoke("build-codebook", [str(emb), "--out", str(tok), "--overwrite", "--categories", catalog, *seed, *_flags("build-codebook", sec_cb)]),
              upstream=(up,))
        stage(f"index[{name}]", sec_ix, [W / f"{tok.name}.index.json"],
              lambda mode, emb=emb, tok=tok: _invoke("index", [str(tok), "--embeddings", str(emb), "--export-lcrec", str(W / f"{tok.name}.index.json"), *_flags("index", sec_ix)]),
              upstream=(f"build-codebook[{name}]",))
    sec = cfg.section("report")
    report_json, report_html = W / "report.json", W / "report.html"

    def do_report(mode):
        rep = _invoke("report", [*(str(d) for d in tok_dirs.values()), "--categories", catalog, "--html", str(report_html), *_flags("report", sec)])
        rep["coclick_agreement"] = {d.name: _coclick_agreement(d, held) for d in tok_dirs.values()}
        from ..io import atomic_write_json

        atomic_write_json(report_json, rep)
        return {"report": str(report_json), "html": str(report_html)}

    stage("report", sec, [report_json, report_html], do_report, upstream=tuple(f"index[{n}]" for n in tok_dirs))
    retrieval = {}
    if cfg.retrieval:
        sec = cfg.section("retrieval")
        for name, tok in tok_dirs.items():
            if name != "aligned" and not cfg.retrieval_baseline:
                continue
            out = W / f"retrieval_{name}.json"
            stage(f"evaluate-retrieval[{name}]", {**sec, "seed": cfg.seed}, [out],
                  lambda mode, tok=tok, out=out: _invoke("evaluate-retrieval", ["--tokenizer", str(tok), "--interactions", inter, "--out", str(out), *seed, *_flags("evaluate-retrieval", sec)]),
                  upstream=(f"index[{name}]",))
            retrieval[name] = json.loads(out.read_text())
    rep = json.loads(report_json.read_text())
    summary = {
        "workdir": str(W),
        "seconds": time.perf_counter() - t_all,
        "stages": [{"stage": o.name, "status": o.status, "seconds": o.seconds} for o in runner.outcomes],
        "report": str(report_json),
        "html": str(report_html),
        "tokenizers": {
            t["name"]: {k: t.get(k) for k in ("n_items", "reconstruction_relative", "collision_rate", "unique_sids", "category_nmi")}
            | {"entropy_normalized": [round(l["entropy_normalized"], 4) for l in t["levels"]]}
            for t in rep["tokenizers"]
        },
        "coclick_agreement": rep.get("coclick_agreement"),
        "alignment": _alignment_eval(align_dir),
        "retrieval": retrieval or None,
    }
    if fmt == OutputFormat.json:
        emit_json(summary)
        return
    from rich.table import Table

    st = Table(title=f"pipeline {cfg.path.name} -> {W}")
    for c in ("stage", "status", "seconds"):
        st.add_column(c, justify="right" if c == "seconds" else "left")
    for s in summary["stages"]:
        st.add_row(escape(s["stage"]), s["status"], f"{s['seconds']:.1f}")
    out_console.print(st)
    from ._render import metrics_table

    out_console.print(metrics_table(rep["tokenizers"], title="tokenizers"))
    ev = summary["alignment"]
    if ev and ev.get("recall_ratio") is not None:
        out_console.print(escape(f"alignment, held-out pairs recall@{ev['k']}: aligned {ev['recall_aligned']:.4f} vs raw pooled "
                                 f"{ev['recall_raw_pooled']:.4f} ({ev['recall_ratio']:.2f}x; {ev['n_pairs']} pairs)"))
    if ev and "caption_loss_with_prefix" in ev:
        other = ev.get("caption_loss_other_item_prefix")
        out_console.print(escape(f"caption loss: own M~ prefix {ev['caption_loss_with_prefix']:.3f}, none {ev['caption_loss_without_prefix']:.3f}"
                                 + (f", another item's prefix {other:.3f}" if other is not None else "")))
    for n, a in (summary["coclick_agreement"] or {}).items():
        if a.get("pairs"):
            out_console.print(escape(f"held-out co-clicked pairs sharing the level-1 code [{n}]: {a['same_level1']:.4f} "
                                     f"(random pairs: {a['same_level1_random']:.4f}; {a['pairs']} pairs)"))
    for n, r in retrieval.items():
        m = r.get("test", r)
        out_console.print(escape(f"retrieval [{n}] (test, full ranking): " + ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))))
    out_console.print(f"report: {report_json}  html: {report_html}  total {summary['seconds']:.1f}s")


def _alignment_eval(align_dir: Path) -> dict | None:
    """The held-out evaluation the align stage wrote, if it ran."""
    try:
        return json.loads((align_dir / "config.json").read_text())["summary"].get("eval")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def register(app: typer.Typer) -> None:
    global _APP
    _APP = app
    app.command("pipeline")(cli_command(pipeline))
