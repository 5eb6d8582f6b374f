"""Downstream table: the same generative retriever, seeds and split on several sets of SIDs.

Each ``--sids NAME=PATH`` is a tokenizer directory or an LC-Rec ``*.index.json``;
``--random-like NAME`` (or ``NAME=PATH``) adds a floor: random distinct SIDs with the same
level sizes as that entry. Writes one JSON (rows: Recall@5/10, NDCG@5/10, train seconds, ...) with a
machine description.

    python benchmarks/bench_retrieval.py \
        --interactions data/amazon-office/Office.inter.json \
        --sids rqkmeans=TOK_PLAIN --sids rqkmeans-balanced=TOK_BALANCED \
        --random-like rqkmeans --epochs 3 --out benchmarks/results/retrieval_office.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizer_kit.companion import RetrievalConfig, evaluate_retrieval, load_sid_index, machine_info, random_sid_index  # noqa: E402
from tokenizer_kit.io import atomic_write_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interactions", required=True)
    ap.add_argument("--sids", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--random-like", action="append", default=[], metavar="NAME[=PATH]")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--d-ff", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--max-history", type=int, default=20, help="items of history per example")
    ap.add_argument("--arch", default="t5")
    ap.add_argument("--max-users", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = RetrievalConfig(arch=args.arch, epochs=args.epochs, seed=args.seed, d_model=args.d_model, d_ff=args.d_ff,
                          n_layers=args.layers, beam_size=args.beam, device=args.device, max_history=args.max_history,
                          batch_size=args.batch_size, lr=args.lr, cpu_threads=args.threads or 1).validate()
    sources: dict[str, object] = {}
    for spec in args.sids:
        name, _, path = spec.partition("=")
        if not path:
            ap.error(f"--sids expects NAME=PATH, got {spec!r}")
        sources[name] = path
    for spec in args.random_like:  # NAME of a --sids entry, or NAME=PATH of a reference not evaluated itself
        name, _, path = spec.partition("=")
        ref = load_sid_index(path or sources[name])
        sources[f"random-like-{name}"] = random_sid_index(ref.item_ids, ref.level_sizes, seed=args.seed)
    rows = []
    for name, src in sources.items():
        t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()
        res = evaluate_retrieval(src, args.interactions, cfg, max_users=args.max_users)
        row = {"name": name, "sids": res["sids"] if isinstance(src, str) else f"random, level sizes {res['level_sizes']}",
               **{k: res["test"][k] for k in res["test"] if "@" in k},
               "invalid_sid_rate": res["test"]["invalid_sid_rate"], "valid_loss": res["valid"].get("loss"),
               "train_losses": res["train"]["losses"], "train_seconds": res["seconds"]["train"],
               "test_seconds": res["seconds"]["test"], "total_seconds": time.perf_counter() - t0,
               "total_cpu_seconds": time.process_time() - c0, "load_before": load0, "load_after": os.getloadavg(),
               "sid_length": res["sid_length"], "level_sizes": res["level_sizes"], "duplicate_sids": res["duplicate_sids"],
               "parameters": res["parameters"], "users": res["test"]["users"]}
        logging.info("%s: %s", name, {k: row[k] for k in row if "@" in k or k.endswith("seconds")})
        rows.append(row)
        atomic_write_json(args.out, {"benchmark": "retrieval", "interactions": args.interactions, "config": cfg.to_dict(),
                                     "machine": machine_info(), "rows": rows, "complete": len(rows) == len(sources)})
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
