"""``tokenizer-kit pipeline CONFIG`` (the whole chain), ``validate CONFIG`` and ``presets``.

The library runs the chain (:func:`tokenizer_kit.pipeline.run`); these verbs parse and render.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ._common import OutputFormat, cli_command, emit_json, note, out_console, progress_bar

__all__ = ["register"]


def pipeline(
    config: Path = typer.Argument(..., help="Pipeline config (TOML, or JSON for *.json); see configs/office.toml."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json (the final summary on stdout)."),
):
    """Run the whole chain on a catalogue and its interactions; skips stages already done."""
    from ..pipeline import run

    def on_stage(name, outcome):
        if outcome is None:
            note(f"[bold cyan]stage[/] {escape(name)}")
        else:
            note(escape(f"  {name}: {outcome.status} in {outcome.seconds:.1f}s"))

    with progress_bar() as progress:
        summary = run(config, progress=progress, on_stage=on_stage)
    reports = summary.pop("tokenizer_reports")
    if fmt == OutputFormat.json:
        emit_json(summary)
        return
    _render(summary, reports, config)


def _render(summary: dict, reports: list, config: Path) -> None:
    from rich.table import Table

    from ._render import metrics_table

    st = Table(title=f"pipeline {config.name} -> {summary['workdir']}")
    for c in ("stage", "status", "seconds"):
        st.add_column(c, justify="right" if c == "seconds" else "left")
    for s in summary["stages"]:
        st.add_row(escape(s["stage"]), s["status"], f"{s['seconds']:.1f}")
    out_console.print(st)
    out_console.print(metrics_table(reports, title="tokenizers"))
    for line in _result_lines(summary):
        out_console.print(escape(line))
    out_console.print(f"report: {summary['report']}  html: {summary['html']}  total {summary['seconds']:.1f}s")


def _result_lines(summary: dict) -> list[str]:
    lines = []
    ev = summary["alignment"] or {}
    if ev.get("recall_ratio") is not None:
        lines.append(f"alignment, held-out pairs recall@{ev['k']}: aligned {ev['recall_aligned']:.4f} vs raw pooled "
                     f"{ev['recall_raw_pooled']:.4f} ({ev['recall_ratio']:.2f}x; {ev['n_pairs']} pairs)")
    if "caption_loss_with_prefix" in ev:
        other = ev.get("caption_loss_other_item_prefix")
        lines.append(f"caption loss: own M~ prefix {ev['caption_loss_with_prefix']:.3f}, none {ev['caption_loss_without_prefix']:.3f}"
                     + (f", another item's prefix {other:.3f}" if other is not None else ""))
    for n, a in (summary["coclick_agreement"] or {}).items():
        if a.get("pairs"):
            lines.append(f"held-out co-clicked pairs sharing the level-1 code [{n}]: {a['same_level1']:.4f} "
                         f"(random pairs: {a['same_level1_random']:.4f}; {a['pairs']} pairs)")
    for n, r in (summary["retrieval"] or {}).items():
        m = r.get("test", r)
        lines.append(f"retrieval [{n}] (test, full ranking): " + ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float)))
    return lines


def validate(
    config: Path = typer.Argument(..., help="Pipeline config (TOML, or JSON for *.json)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
):
    """Check a pipeline config without running anything: every error at once, or a short summary."""
    from ..pipeline import STAGES, load_config

    cfg = load_config(config)
    summary = {
        "config": str(config),
        "valid": True,
        "workdir": str(cfg.workdir),
        "catalog": str(cfg.catalog),
        "interactions": str(cfg.interactions),
        "seed": cfg.seed,
        "stages": list(STAGES),
        "baseline": cfg.baseline,
        "retrieval": cfg.run_retrieval,
        "align_steps": cfg.align.steps,
        "codebook": f"{cfg.codebook.method} {'x'.join(map(str, cfg.codebook.sizes_per_level()))}",
    }
    if fmt == OutputFormat.json:
        emit_json(summary)
        return
    out_console.print(
        f"{escape(str(config))}: valid. {cfg.codebook.method} {'x'.join(map(str, cfg.codebook.sizes_per_level()))} after "
        f"{cfg.align.steps} alignment steps; baseline {'on' if cfg.baseline else 'off'}, retrieval {'on' if cfg.run_retrieval else 'off'}; "
        f"writes to {escape(str(cfg.workdir))}",
        highlight=False,
        soft_wrap=True,
    )


def presets(
    stage: Optional[str] = typer.Argument(None, help="Only this stage's presets (a pipeline table name, e.g. align)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
):
    """List the named presets shipped in the package (`--preset NAME`, or `preset = NAME` in a pipeline table)."""
    from .._config import list_presets, load_preset, preset_note

    if stage and not list_presets(stage):
        from ..errors import UsageError

        stages = sorted({n.split("/", 1)[0] for n in list_presets()})
        raise UsageError(f"no presets for stage {stage!r}; stages with presets: {stages}")
    names = list_presets(stage) if stage else list_presets()
    rows = []
    for n in names:
        st, name = (stage, n) if stage else n.split("/", 1)
        rows.append({"stage": st, "preset": name, "settings": load_preset(st, name), "note": preset_note(st, name)})
    if fmt == OutputFormat.json:
        emit_json(rows)
        return
    from rich.table import Table

    t = Table(title="presets")
    for c in ("stage", "preset", "settings", "note"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["stage"], r["preset"], escape(", ".join(f"{k}={v}" for k, v in r["settings"].items())), escape(r["note"]))
    out_console.print(t)


def register(app: typer.Typer) -> None:
    app.command("pipeline")(cli_command(pipeline))
    app.command("validate")(cli_command(validate))
    app.command("presets")(cli_command(presets))
