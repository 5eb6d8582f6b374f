"""Sizing the fast companion: validation ItemHit/ItemNDCG@5/10 after each epoch, dropout 0 vs 0.1.

Scientific (4,344 items, 33,541 training windows), SIDs of CollisionGenRec's ``rkmeans_zcr``
index (collision-free, so every metric reads as the standard one), d_model 64, 2 + 2
layers, batch 128, lr 3e-3, 5 epochs (linear decay over the 5), scored on the first 1,500
validation users after every epoch; process CPU seconds beside wall seconds (the machine is
shared: wall time says little).

    python benchmarks/companion_fast_settings.py --scientific DIR --out benchmarks/results/companion_fast_settings.json

``DIR`` (or ``$TOKENIZER_KIT_SCIENTIFIC``) is the Amazon Scientific data, not bundled: see
``benchmarks/README.md`` for where to get it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine_info  # noqa: E402
from benchmarks._paths import scientific_dir  # noqa: E402
from tokenizer_kit.companion import GenerativeRetriever, RetrievalConfig, load_sid_index, sequence_split  # noqa: E402
from tokenizer_kit.io import atomic_write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--valid-users", type=int, default=1500)
    ap.add_argument("--scientific", default=None, help="the Amazon Scientific data directory (default $TOKENIZER_KIT_SCIENTIFIC)")
    a = ap.parse_args()
    DATA = scientific_dir(a.scientific)
    idx = load_sid_index(DATA / "indexes" / "rkmeans_zcr.index.json")
    split = sequence_split(DATA / "Scientific.inter.json", idx, max_history=20)
    valid = split.subset("valid", a.valid_users)
    rows = []
    for name, kw in [("dropout 0", {"dropout": 0.0}), ("dropout 0.1", {"dropout": 0.1})]:
        cfg = RetrievalConfig(epochs=a.epochs, eval_every=1, eval_batch_size=256, batch_size=128, lr=3e-3, **kw)
        r = GenerativeRetriever(idx, cfg)
        t, c = time.perf_counter(), time.process_time()

        def on_epoch(rec, name=name, t=t, c=c):
            rows.append({"run": name, "epoch": rec["epoch"], "loss": rec["loss"], "valid": rec["valid"],
                         "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "load": os.getloadavg()[0]})
            atomic_write_json(a.out, {"benchmark": "companion_fast_settings", "sids": "rkmeans_zcr (CollisionGenRec)",
                                      "valid_users": a.valid_users, "machine": machine_info(), "rows": rows})

        r.fit(split.train_hist, split.train_target, valid=valid, on_epoch=on_epoch)


if __name__ == "__main__":
    main()
