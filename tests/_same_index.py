"""Two tokenizer directories indexed two ways hold the same index: the files byte for byte,
equal SID tables, and manifests equal but for timings and checksums."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tokenizer_kit import SemanticTokenizer

INDEX_FILES = ("trie.safetensors", "index.safetensors", "quantizer.safetensors")


def without_timings(m: dict) -> dict:
    """A manifest without what differs between two equal builds (times, checksums, durations)."""
    m = json.loads(json.dumps(m))
    for k in ("files", "manifest_sha256", "written_at", "created_at"):
        m.pop(k, None)
    sec = m["sections"]["index"]
    sec.pop("updated_at")
    for h in sec["history"]:
        h.pop("at")
    for k in ("resolve_seconds", "trie_build_seconds"):
        sec["stats"].pop(k)
    return m


def assert_same_index(a: Path, b: Path) -> tuple[SemanticTokenizer, SemanticTokenizer]:
    """Asserts the directories ``a`` and ``b`` hold the same index; returns both loaded."""
    for name in INDEX_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert pq.read_table(a / "sids.parquet").equals(pq.read_table(b / "sids.parquet"))
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert without_timings(ma) == without_timings(mb)
    la, lb = SemanticTokenizer.from_pretrained(a), SemanticTokenizer.from_pretrained(b)
    assert np.array_equal(la.sids, lb.sids) and np.array_equal(la.item_ids, lb.item_ids)
    return la, lb
