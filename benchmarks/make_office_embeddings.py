"""Regenerate tests/data/office_minilm_f16.npy (+ .ids.txt): the Office items embedded with the
offline all-MiniLM-L6-v2 (title, description, brand, categories; mean-pooled, L2-normalised,
max 256 tokens), stored as float16. Tests and benchmarks read it so they need not embed.

    python benchmarks/make_office_embeddings.py --out tests/data/office_minilm_f16.npy
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tokenizer_kit.features import embed_texts, item_texts
from tokenizer_kit.io import read_catalog

FIELDS = ["title", "description", "brand", "categories"]
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", default=str(ROOT / "data" / "amazon-office" / "Office.item.json"))
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "office_minilm_f16.npy"))
    args = ap.parse_args()
    table = read_catalog(args.catalog)
    x = embed_texts(item_texts(table.select(FIELDS).to_pylist(), FIELDS))
    out = Path(args.out)
    np.save(out, x.astype(np.float16))
    out.with_suffix(".ids.txt").write_text("\n".join(table.column("item_id").to_pylist()) + "\n")


if __name__ == "__main__":
    main()
