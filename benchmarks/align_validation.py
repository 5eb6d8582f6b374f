"""Validation-pair recall for aligned embeddings that `align_office.py` already wrote.

Scores (last training item, validation item) pairs per user, which never touch test items,
next to the held-out (validation item, test item) pairs, for runs made before
`align_office.py` recorded `validation` itself. Raw baseline: mean-pooled first 32 tokens.

    python benchmarks/align_validation.py --work benchmarks/.scratch/tk_align f g u40s0 u40s1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_info  # noqa: E402
from align_office import validation_pairs  # noqa: E402
from office_feature_store import DATA  # noqa: E402
from _paths import portable, scratch  # noqa: E402

from tokenizer_kit.alignment import interaction_log, leave_one_out_split, pair_recall_at_k, pooled_features  # noqa: E402
from tokenizer_kit.features import FeatureStore  # noqa: E402
from tokenizer_kit.io import load_embeddings, read_interactions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tags", nargs="+", help="run tags: WORK/office_aligned_TAG.parquet")
    ap.add_argument("--work", default=str(scratch("tk_align")), help="align_office.py's --work (default benchmarks/.scratch/tk_align)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "align_office_validation.json"))
    args = ap.parse_args()
    work = Path(args.work)
    store = FeatureStore.open(work / "office_store")
    log = interaction_log(read_interactions(DATA / "Office.inter.json"))
    split = leave_one_out_split(log)
    ids = log.item_ids
    va, vb = (np.array([store.index_of(i) for i in side]) for side in validation_pairs(split))
    ta = np.array([store.index_of(str(i)) for i in ids[split.valid.items]])
    tb = np.array([store.index_of(str(i)) for i in ids[split.test.items]])
    raw = pooled_features(store, max_tokens=args.max_tokens)
    rv, rt = pair_recall_at_k(raw, va, vb, 10), pair_recall_at_k(raw, ta, tb, 10)
    runs = []
    for tag in args.tags:
        e = load_embeddings(work / f"office_aligned_{tag}.parquet")
        assert list(map(str, e.ids)) == list(store.item_ids)
        x = np.asarray(e.vectors, np.float32)
        v, t = pair_recall_at_k(x, va, vb, 10), pair_recall_at_k(x, ta, tb, 10)
        runs.append({"tag": tag, "validation_recall": v, "validation_ratio": v / rv, "heldout_recall": t, "heldout_ratio": t / rt})
        print(json.dumps(runs[-1]))
    out = {
        "benchmark": "align_validation",
        "machine": machine_info(),
        "command": portable("python " + " ".join(sys.argv)),
        "validation_pairs": int(len(va)),
        "heldout_pairs": int(len(ta)),
        "raw_pooled": {"validation_recall": rv, "heldout_recall": rt},
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
