"""``tokenizer-kit evaluate-retrieval``: the downstream check of SIDs (train a small generative retriever, score it).

One set of SIDs and one seed: that run's numbers. Several sets (``-t`` repeated, ``NAME=PATH``)
or several seeds (``--seeds 0,1,2``): one model per set and seed, all on the same users, and
one table with each set's mean and 95% interval and its paired difference to the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from ..pipeline import RetrievalStageConfig, stages
from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar
from ._options import settings_options

__all__ = ["register"]


def _sources(specs: list[str]) -> dict[str, str]:
    """``NAME=PATH`` or ``PATH`` (named after the file or directory) -> {name: path}."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            name = Path(spec.rstrip("/")).name.removesuffix(".json").removesuffix(".index") or spec
        if name in out:
            raise UsageError(f"two sets of SIDs are named {name!r}; name them with NAME=PATH")
        out[name] = path
    return out


def _seeds(text: Optional[str], seed: int) -> list[int]:
    if text is None:
        return [seed]
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds expects comma-separated integers such as 0,1,2, got {text!r}")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UsageError(f"--seeds expects distinct non-negative integers such as 0,1,2, got {text!r}")
    return seeds


def evaluate_retrieval(
    tokenizer: list[str] = typer.Option(..., "--tokenizer", "-t", help="SIDs: a tokenizer directory (indexed) or an LC-Rec *.index.json of any tool, as PATH or NAME=PATH; repeat to compare several sets."),
    interactions: Path = typer.Option(..., "--interactions", "-i", help="Interactions: Parquet (user_id, item_id, timestamp) or an LC-Rec *.inter.json."),
    cfg: RetrievalStageConfig = None,
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Train one model per seed, e.g. 0,1,2: mean and 95% interval over seeds and users (replaces --seed)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Set the others are compared with (default: the first -t)."),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="Keep each (set, seed) run here as it finishes; a rerun reads back the runs done with the same settings."),
    model_out: Optional[Path] = typer.Option(None, "--model-out", help="Also save the trained model (manifest.json + model.safetensors); one set and one seed only."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the full result JSON here."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
):
    """Train a small generative retriever on the SIDs and report leave-one-out ItemHit/ItemNDCG@5/10
    (collision-corrected) and Recall/NDCG@5/10 (full ranking); with several sets or seeds, a paired comparison.

    --preset fast (the default settings) fits a CPU; --preset tiger is TIGER's model and schedule, for a GPU.
    """
    sources = _sources(tokenizer)
    seed_list = _seeds(seeds, cfg.seed)
    if model_out is not None and (len(sources) > 1 or len(seed_list) > 1):
        raise UsageError("--model-out saves one model: give one --tokenizer and one seed")
    with progress_bar() as progress:
        if len(sources) == 1 and len(seed_list) == 1:
            res = stages.evaluate_retrieval(next(iter(sources.values())), interactions, cfg, out=out, model_out=model_out, progress=progress)
        else:
            res = stages.compare_retrieval(sources, interactions, cfg, seeds=seed_list, reference=reference, runs_dir=runs_dir,
                                           out=out, progress=progress)
    if fmt == OutputFormat.json:
        emit_json(res)
        return
    if "comparisons" in res:
        _render_comparison(res, out)
    else:
        _render_single(res, tokenizer[0], cfg.epochs, out)


_COLUMNS = ("item_hit@5", "item_ndcg@5", "item_hit@10", "item_ndcg@10", "recall@10", "ndcg@10")


def _render_single(res: dict, tokenizer: str, epochs: int, out: Optional[Path]) -> None:
    from rich.table import Table

    t = Table(title=f"leave-one-out retrieval on {tokenizer} ({res['test']['users']} test users, {res['n_items']} items)")
    for c in ("split", *_COLUMNS):
        t.add_column(c, justify="right")
    for part in ("test", "valid"):
        m = res[part]
        if "item_hit@10" in m:
            t.add_row(part, *(f"{m[k]:.4f}" for k in _COLUMNS))
    out_console.print(t)
    losses = res["train"]["losses"]
    out_console.print(
        f"train {res['seconds']['train']:.0f}s ({len(losses)} of {epochs} epochs, final loss {losses[-1] if losses else float('nan'):.4f}), "
        f"test {res['seconds']['test']:.0f}s, targets with a shared SID {res['test']['shared_target_rate']:.2%}, "
        f"invalid SIDs {res['test']['invalid_sid_rate']:.2%}" + (f"; wrote {out}" if out else ""),
        highlight=False,
    )


def _render_comparison(res: dict, out: Optional[Path]) -> None:
    from rich.table import Table

    ref = res["reference"]
    seeds = ",".join(map(str, res["seeds"]))
    t = Table(title=f"leave-one-out retrieval, {res['users']} test users, seeds {seeds}: mean [95% interval]; "
                    f"diff to {ref} (* = significant, paired bootstrap over users and seeds, Holm)")
    t.add_column("SIDs")
    for m in ("item_hit@10", "item_ndcg@10"):
        t.add_column(m, justify="right")
        t.add_column(f"diff {m}", justify="right")
    t.add_column("recall@10", justify="right")
    t.add_column("ndcg@10", justify="right")
    t.add_column("shared targets", justify="right")
    for name, s in res["sets"].items():
        row = [name]
        for m in ("item_hit@10", "item_ndcg@10"):
            row.append(f"{s[m]['mean']:.4f} [{s[m]['lo']:.4f}, {s[m]['hi']:.4f}]")
            d = res["comparisons"][m].get(name)
            row.append("reference" if d is None else f"{d['diff']:+.4f}{'*' if d['significant'] else ''} (p {d['p_holm']:.3f})")
        row += [f"{s['recall@10']['mean']:.4f}", f"{s['ndcg@10']['mean']:.4f}", f"{s['shared_target_rate']:.1%}"]
        t.add_row(*row)
    out_console.print(t)
    lost = {n: k for n, k in res.get("users_left_out", {}).items() if k}
    if lost:
        out_console.print(f"paired on the {res['users']} test users every set scored; left out: "
                          + ", ".join(f"{n} {k}" for n, k in lost.items()), highlight=False)
    if out is not None:
        out_console.print(f"wrote {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("evaluate-retrieval")(cli_command(settings_options(stage="retrieval")(evaluate_retrieval)))
