"""``tokenizer-kit index`` / ``lookup`` / ``import-index``: SIDs, the trie, lookups, LC-Rec interop."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..pipeline import EmbeddingsInput, ImportIndexConfig, IndexStageConfig, LookupConfig, stages
from ._common import OutputFormat, cli_command, emit_json, holds_writer_lock, out_console, status
from ._options import settings_options

__all__ = ["register"]


def _kv_table(title: str, res: dict):
    from rich.table import Table

    t = Table(title=title)
    t.add_column("field")
    t.add_column("value", justify="right")
    for k, v in res.items():
        if isinstance(v, (dict, list)):
            continue
        t.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    return t


def index(
    tokenizer: Path = typer.Argument(..., help="Tokenizer directory from build-codebook."),
    cfg: IndexStageConfig = None,
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", "-e", help="Embeddings of the indexed items: needed by reassign; ranks suffixes and pins embeddings for cold start."),
    ids: Optional[Path] = typer.Option(None, "--ids", help="Item ids for a .npy input."),
    columns: EmbeddingsInput = None,
    export_lcrec: Optional[Path] = typer.Option(None, "--export-lcrec", help="Also write an LC-Rec style *.index.json (item -> ['<a_1>', ...])."),
    vocab_out: Optional[Path] = typer.Option(None, "--vocab-out", help="Also write the SID vocabulary JSON (tokens for add_tokens, per-level offsets)."),
    from_shards: Optional[Path] = typer.Option(None, "--from-shards", help="Index the items of a sharded `assign --engine ray` output "
                                               "(resolved group by group across shards) instead of the tokenizer's own items."),
    shards_out: Optional[Path] = typer.Option(None, "--shards-out", help="With --from-shards: the shard directory the SIDs are written to."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
):
    """(Re)build the SIDs (one item per SID) and the trie of a tokenizer directory."""
    from ..errors import UsageError

    if (from_shards is None) != (shards_out is None):
        raise UsageError("--from-shards and --shards-out go together (the sharded codes in, the sharded SIDs out)")
    if from_shards is not None and embeddings is not None:
        raise UsageError("--embeddings ranks the tokenizer's own items; with --from-shards leave it out")
    with status(f"indexing {tokenizer} ({cfg.policy})"):
        if from_shards is not None:
            res = stages.index_from_shards(tokenizer, from_shards, shards_out, cfg, export_lcrec=export_lcrec, vocab_out=vocab_out)
        else:
            res = stages.index(tokenizer, cfg, embeddings=embeddings, ids=ids, columns=columns, export_lcrec=export_lcrec,
                               vocab_out=vocab_out)
    if fmt == OutputFormat.json:
        emit_json(res)
    else:
        out_console.print(_kv_table(f"indexed {tokenizer} (policy {res['policy']}, version {res['version']})", res))


def _load_index(path: Path):
    """A tokenizer directory's index, or an imported LC-Rec *.index.json."""
    from .. import SemanticTokenizer
    from ..errors import TokenizerKitError
    from ..indexer import SIDIndex

    if path.suffix == ".json" and not path.is_dir():
        return SIDIndex.from_lcrec(path)
    tok = SemanticTokenizer.from_pretrained(path)
    idx = SIDIndex.stored(tok)
    if idx is None:
        raise TokenizerKitError(f"{path} has no SID index; run `tokenizer-kit index {path}` first")
    return idx


def lookup(
    source: Path = typer.Argument(..., help="Tokenizer directory (indexed) or an LC-Rec *.index.json."),
    item: Optional[str] = typer.Option(None, "--item", help="Item id -> its SID."),
    sid: Optional[str] = typer.Option(None, "--sid", help='Full SID -> its item, as one string of level tokens in order, e.g. '
                                      '"<a_1><b_2><c_3><d_0>" (whitespace between tokens is ignored).'),
    prefix: Optional[str] = typer.Option(None, "--prefix", help='SID prefix -> allowed next tokens and item count, e.g. "<a_1>" ("" for '
                                         'the root); at most as many tokens as a full SID.'),
    cfg: LookupConfig = None,
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
):
    """Look up item -> SID, SID -> item, or prefix -> allowed next tokens and item count."""
    from ..build import parse_sid_string, sid_string
    from ..errors import InputError, UsageError

    if item is None and sid is None and prefix is None:
        raise UsageError("nothing to look up; pass --item ID, --sid '<a_1><b_2><c_3>' or --prefix '<a_1>'")
    idx = _load_index(source)
    res: dict = {}
    if item is not None:
        codes = idx.sid_of(item)
        res["item"] = {"item_id": item, "sid": sid_string(codes), "codes": codes}
    if sid is not None:
        codes = parse_sid_string(sid)
        if len(codes) != idx.sid_length:
            raise InputError(f"SID {sid!r} has {len(codes)} tokens; SIDs in this index have {idx.sid_length} (use --prefix for a prefix)")
        found = idx.item_of(codes)
        res["sid"] = {"sid": sid, "valid": found is not None, "item_id": None if found is None else (found.item() if hasattr(found, "item") else found)}
    if prefix is not None:
        n_tok = len(parse_sid_string(prefix)) if prefix.strip() else 0
        if n_tok > idx.sid_length:
            raise InputError(f"prefix {prefix[:60]!r} has {n_tok} tokens, but SIDs in this index have {idx.sid_length}; "
                             "give at most that many (--sid for a full SID)")
        items = idx.items_under(prefix)
        res["prefix"] = {
            "prefix": prefix,
            "count": idx.count_under(prefix),
            "allowed_next": idx.allowed_next(prefix),
            "items": [v.item() if hasattr(v, "item") else v for v in items[: cfg.limit]],
        }
    if fmt == OutputFormat.json:
        emit_json(res)
        return
    if "item" in res:
        out_console.print(f"item {item} -> {res['item']['sid']}", highlight=False)
    if "sid" in res:
        r = res["sid"]
        out_console.print(f"{sid} -> " + (f"item {r['item_id']}" if r["valid"] else "no item holds this SID"), highlight=False)
    if "prefix" in res:
        r = res["prefix"]
        nxt = r["allowed_next"]
        shown = " ".join(nxt[:32]) + (f" ... ({len(nxt)} in all)" if len(nxt) > 32 else "")
        out_console.print(f"prefix {prefix!r}: {r['count']} items; next tokens: {shown or '(none: full SID or unknown prefix)'}", highlight=False)
        if r["items"]:
            out_console.print("items: " + ", ".join(map(str, r["items"])), highlight=False)


def import_index(
    path: Path = typer.Argument(..., help="An LC-Rec / LETTER / MiniOneRec style *.index.json (item -> ['<a_1>', ...])."),
    cfg: ImportIndexConfig = None,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write a tokenizer directory holding these SIDs as a collision-free "
                                       "index (--policy), with its trie: lookup, constrained decoding and cold start "
                                       "(`assign NEW.index.json --tokenizer DIR --update`) then work on it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out directory."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
):
    """Report another tool's SIDs (collisions, trie size); with --out, make them a collision-free index."""
    res = stages.import_index(path, cfg, out=out, overwrite=overwrite)
    if fmt == OutputFormat.json:
        emit_json(res)
        return
    out_console.print(_kv_table(f"imported {path}", res))
    if out is not None:
        out_console.print(_kv_table(f"wrote {out} (policy {res['index']['policy']})", res["index"]))


def register(app: typer.Typer) -> None:
    app.command("index")(cli_command(holds_writer_lock("tokenizer")(settings_options(stage="index")(index))))
    app.command("lookup")(cli_command(settings_options()(lookup)))
    app.command("import-index")(cli_command(settings_options()(import_index)))
