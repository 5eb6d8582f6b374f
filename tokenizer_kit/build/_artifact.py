"""The tokenizer directory as an artifact: its kind (manifest, required files) and its model card.

The tokenizer is written by ``SemanticTokenizer.save_pretrained`` and the streamed build,
and changed in place by the indexer (cold-start segments, compaction); all of them go through
the manifest module with ``TOKENIZER``. Layout (format version 2)::

    manifest.json           the manifest (``tokenizer.json`` in directories written before it)
    quantizer.safetensors   the codebooks
    sids.parquet            the built items' codes (when it has items)
    index.safetensors, trie.safetensors, <segment>.safetensors   the index, when indexed
    README.md               the model card, rendered from the manifest at every commit

The card is documentation, not part of the artifact: it is not in the manifest's file list,
and a loader never reads it.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..io import ArtifactKind

__all__ = ["TOKENIZER", "READ_IN_PART", "tokenizer_card"]

# Files a load that leaves the items on disk reads in part: memory-mapped (the index's arrays
# and trie) or by their statistics (sids.parquet). Under ``verify="read"`` they are checked by
# size and each other file, read whole (quantizer, index segments), by its checksum; a cold
# start then reads O(new items) of the directory, not all of it.
READ_IN_PART = frozenset({"index.safetensors", "trie.safetensors", "sids.parquet"})

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _num(v: Any, digits: int = 4) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _secs(v: Any) -> float | None:
    return None if v is None else round(float(v), 1)


def _rows(pairs: list[tuple[str, Any]]) -> list[str]:
    rows = [(k, v) for k, v in pairs if v is not None]
    if not rows:
        return []
    return ["| | |", "|---|---|", *(f"| {k} | {_num(v)} |" for k, v in rows), ""]


def _built(data: Mapping[str, Any]) -> list[str]:
    build, training = data.get("build") or {}, data.get("training") or {}
    sizes = data.get("codebook_sizes") or []
    shape = f"{data.get('levels', len(sizes))} levels x {'/'.join(map(str, sizes))} codes"
    when = build.get("built_at") or training.get("built_at")
    lines = [f"Built by tokenizer-kit {data.get('package_version', '?')} with **{data.get('method', '?')}** ({shape})"
             + (f" on {when}." if when else ".")]
    if training.get("resumed_from"):
        lines.append(f"Training resumed from `{training['resumed_from']}`.")
    lines.append("")
    pre = data.get("preprocessing") or {}
    lines += ["## Input", ""]
    lines += _rows([
        ("source", build.get("source") or data.get("source")),
        ("items", data.get("n_items")),
        ("dimension", data.get("input_dim")),
        ("L2-normalised", pre.get("normalize")),
        ("trained on (sample)", training.get("n_train")),
        ("device", training.get("device")),
        ("build seconds", _secs(build.get("total_seconds") or training.get("fit_seconds"))),
    ])
    return lines


def _metrics(data: Mapping[str, Any]) -> list[str]:
    m = data.get("metrics") or {}
    if not m:
        return []
    lines = ["## Metrics (at build time)", ""]
    lines += _rows([
        ("reconstruction MSE", m.get("reconstruction_mse")),
        ("relative error (MSE / mean squared norm)", m.get("reconstruction_relative")),
        ("collision rate of the codes (items sharing a code tuple)", m.get("collision_rate")),
        ("unique code tuples", m.get("unique_sids")),
        ("largest bucket", m.get("largest_bucket")),
        ("level-1 NMI with categories", m.get("category_nmi")),
    ])
    levels = m.get("levels") or []
    if levels:
        lines += ["| level | codebook | used | entropy / ln K | Gini | largest code share |", "|---|---|---|---|---|---|"]
        for i, lv in enumerate(levels):
            lines.append(f"| {_LETTERS[i] if i < 26 else i} | {_num(lv.get('codebook_size'))} | {_num(lv.get('used_codes'))} | "
                         f"{_num(lv.get('entropy_normalized'))} | {_num(lv.get('gini'))} | {_num(lv.get('largest_code_share'))} |")
        lines.append("")
    return lines


def _index(data: Mapping[str, Any]) -> list[str]:
    idx = (data.get("sections") or {}).get("index")
    if not idx:
        return ["## SID index", "", "None yet: `tokenizer-kit index DIR` builds one (SIDs unique per item, trie).", ""]
    stats = idx.get("stats") or {}
    lines = ["## SID index", ""]
    lines += _rows([
        ("policy", idx.get("policy")),
        ("version", idx.get("version")),
        ("items", idx.get("n_items")),
        ("SID length (tokens)", idx.get("sid_length")),
        ("collision rate of the SIDs", stats.get("collision_rate_sids")),
        ("cold-start segments", len(idx.get("segments") or [])),
        ("updated", idx.get("updated_at")),
    ])
    return lines


def tokenizer_card(data: Mapping[str, Any], name: str) -> str:
    """Markdown describing the tokenizer whose manifest is ``data``, in directory ``name``."""
    lines = [f"# {name}: semantic-ID tokenizer", ""]
    lines += _built(data)
    lines += _metrics(data)
    lines += _index(data)
    lines += [
        "## Use", "",
        "```python",
        "from tokenizer_kit import SemanticTokenizer",
        f'tok = SemanticTokenizer.from_pretrained("{name}")',
        "codes = tok.encode(x)            # x: (n, d) float32 embeddings of the same model",
        "```", "",
        "```bash",
        f"tokenizer-kit lookup {name} --item ITEM_ID",
        f"tokenizer-kit report {name}",
        "```", "",
        "## Settings", "",
        "```json",
        json.dumps(data.get("config") or {}, indent=2, sort_keys=True, default=str),
        "```", "",
        f"This card is written by tokenizer-kit from `{name}/manifest.json` at every change of the directory; edits are overwritten.",
        "",
    ]
    return "\n".join(lines)


def _required(fv: int, data: Mapping[str, Any]) -> set[str]:
    req = {"quantizer.safetensors"}
    if _int_or_zero(data.get("n_items")) > 0:
        req.add("sids.parquet")
    sections = data.get("sections")
    if isinstance(sections, Mapping) and sections.get("index"):
        req |= {"index.safetensors", "trie.safetensors"}
        segments = sections["index"].get("segments") if isinstance(sections["index"], Mapping) else None
        for g in segments if isinstance(segments, list) else []:  # the index's cold-start segments
            if isinstance(g, Mapping) and isinstance(g.get("name"), str):
                req.add(f"{g['name']}.safetensors")
    return req


def _int_or_zero(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


TOKENIZER = ArtifactKind(
    name="tokenizer",
    legacy_manifest_names=("tokenizer.json",),
    # 1: a files map of sha256 strings, no envelope; 2: envelope + sealed manifest
    format_version=2,
    sealed_since=2,
    what="tokenizer directory",
    fix="rebuild it with `tokenizer-kit build-codebook` (then `tokenizer-kit index`) or restore it",
    required=_required,
    card=tokenizer_card,
)
