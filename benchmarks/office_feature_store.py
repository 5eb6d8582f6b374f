"""Build (once) a MiniLM token feature store for Amazon Office, for the alignment experiments.

Each item's text ("title: ...; brand: ...; categories: ...; description: ...") goes through
all-MiniLM-L6-v2; the last hidden states of the real tokens (at most 128) are stored.

    python benchmarks/office_feature_store.py [--out DIR]   (default benchmarks/.scratch/tk_align/office_store)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _paths import OFFICE as DATA, scratch

FIELDS = ("title", "brand", "categories", "description")


def build(out: Path, max_tokens: int = 128, batch_size: int = 64) -> Path:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tokenizer_kit.features import default_text_model_path, item_texts, write_feature_store
    from tokenizer_kit.io import read_catalog

    if (out / "manifest.json").exists():
        return out
    torch.manual_seed(0)
    cat = read_catalog(DATA / "Office.item.json")
    recs = cat.to_pylist()
    ids = [r["item_id"] for r in recs]
    texts = item_texts(recs, FIELDS)
    path = default_text_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    toks: list[np.ndarray] = [None] * len(ids)  # type: ignore[list-item]
    t0 = time.time()
    with torch.inference_mode():
        for s in range(0, len(ids), batch_size):
            enc = tok(texts[s : s + batch_size], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
            h = model(**enc).last_hidden_state
            for r in range(h.shape[0]):
                n = int(enc["attention_mask"][r].sum())
                toks[s + r] = h[r, :n].float().numpy()
    write_feature_store(out, ids, toks, config={"backend": "transformers", "model": "all-MiniLM-L6-v2", "fields": list(FIELDS), "max_tokens": max_tokens})
    print(f"wrote {out} ({len(ids)} items, {time.time() - t0:.0f}s)")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(scratch("tk_align", "office_store")))
    ap.add_argument("--max-tokens", type=int, default=128)
    a = ap.parse_args()
    build(Path(a.out), a.max_tokens)
