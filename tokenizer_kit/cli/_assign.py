"""``tokenizer-kit assign``: encode items with a frozen tokenizer; cold-start them into the index.

Without an index in the tokenizer directory it writes raw codes (``--out``). With one it
resolves the new items against the existing SIDs (never changing one) and reports the
cold-start lookup table; ``--update`` also appends them to the index (atomically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..pipeline import AssignConfig, EmbeddingsInput, stages
from ._common import OutputFormat, cli_command, emit_json, holds_writer_lock, out_console, progress_bar
from ._options import settings_options

__all__ = ["register"]


def assign(
    embeddings: Path = typer.Argument(..., help="Embeddings of the items to assign (same model as the tokenizer)."),
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory from build-codebook."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output Parquet: item_id, code_0.., sid (+ status, collided, moved, nearest with an index); "
                                     "with --engine ray a directory of Parquet shards holding the same rows."),
    update: bool = typer.Option(False, "--update", help="Append the new items to the index (sids.parquet, trie), bump its version; atomic."),
    cfg: AssignConfig = None,
    ids: Optional[Path] = typer.Option(None, "--ids", help="Item ids for a .npy input."),
    columns: EmbeddingsInput = None,
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json: a summary either way; the items' rows go to --out."),
    print_items: bool = typer.Option(False, "--print-items", help="With --format json, also print every item's lookup row "
                                     "(sid, status, nearest) under \"lookup\" (large for big inputs; --out writes them as Parquet)."),
):
    """Assign SIDs to items with frozen codebooks; with an index, cold-start them (--update to write).

    Output columns (--out, and the table): item_id, the input's id; code_0.., the item's code at
    each level; sid, its SID tokens. With an index also: status, known (in the index: its indexed
    SID, unchanged), new (not in the index: the SID it gets, written with --update) or replaced
    (known, with another embedding, --replace: a new SID); collided, its codes equal an indexed
    SID's, so the policy told it apart (suffix: the last token); moved, the reassign policy moved
    it to another last-level code; nearest, the ids of the indexed items nearest to a new item
    among those sharing its SID prefix (all but the last level), nearest first: a warm start for
    its embedding in a generative model (empty for known items).
    """
    with progress_bar() as progress:
        res = stages.assign(embeddings, tokenizer, cfg, out=out, update=update, ids=ids, columns=columns, progress=progress,
                            rows=print_items)
    if fmt == OutputFormat.json:
        emit_json(_json_summary(res, print_items))
    elif "lookup" in res or "lookup_rows" in res:
        _render_cold_start(res, cfg.show)
    else:
        _render_codes(res)


def _json_summary(res: dict, print_items: bool) -> dict:
    """The result without its per-item rows (unless ``print_items``): how many there are and where they went."""
    if "lookup" not in res or print_items:
        return res
    out = {k: v for k, v in res.items() if k != "lookup"}
    out["lookup_rows"] = len(res["lookup"])
    if "out" not in res:
        out["lookup_note"] = "per-item rows not printed; pass --out FILE.parquet to write them, or --print-items"
    return out


def _kv_table(title: str | None, res: dict):
    from rich.table import Table

    t = Table(title=title)
    t.add_column("field")
    t.add_column("value", justify="right")
    for k, v in res.items():
        if not isinstance(v, (dict, list)):
            t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    return t


def _render_codes(res: dict) -> None:
    out_console.print(_kv_table(f"assigned {res['n_items']} items -> {res['out']}", res))


def _cold_start_title(res: dict) -> str:
    """What the command did, in words: items looked up, new ones placed, whether the index changed."""
    known, new, replaced = res.get("known", 0), res.get("new", 0), res.get("replaced", 0)
    head = f"assigned {res['items']:,} items with {Path(str(res['tokenizer'])).name}: {known:,} known (indexed SIDs)"
    fresh = f"{new:,} new" + (f" + {replaced:,} replaced" if replaced else "")
    if res.get("updated"):
        return f"{head}, {fresh} added to the index (version {res['version_before']} -> {res['version_after']})"
    return f"{head}, {fresh} given SIDs; index unchanged (--update adds them)"


def _render_cold_start(res: dict, show: int) -> None:
    from rich.table import Table

    table = res["lookup"] if "lookup" in res else _head_rows(res["out"], show)
    out_console.print(_cold_start_title(res), markup=False, highlight=False, soft_wrap=True)
    out_console.print(_kv_table(None, res))
    if table and show:
        total = res.get("lookup_rows", len(table))
        t = Table(title=f"items (first {min(show, len(table))} of {total}; columns: assign --help)")
        for c in ("item_id", "sid", "status", "collided", "moved", "nearest"):
            t.add_column(c)
        for r in table[:show]:
            t.add_row(str(r["item_id"]), r["sid"], r["status"], str(r["collided"]), str(r["moved"]), ", ".join(map(str, r["nearest"])))
        out_console.print(t)


def _head_rows(path: str, show: int) -> list[dict]:
    """The first ``show`` lookup rows of an ``assign --out`` file or shard directory (the rows
    were streamed there)."""
    import pyarrow.dataset as ds

    if not show:
        return []
    return ds.dataset(path, format="parquet").head(show, columns=["item_id", "sid", "status", "collided", "moved", "nearest"]).to_pylist()


def register(app: typer.Typer) -> None:
    app.command("assign")(cli_command(holds_writer_lock("tokenizer", when="update")(settings_options()(assign))))
