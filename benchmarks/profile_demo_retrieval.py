"""Where the demo's evaluate-retrieval stage spends its time: a training step, decoding.

Times the companion T5 (the retrieval defaults: d 64, 2+2 layers, batch 64, history 20 (the
fast demo uses 10), beam 10, one CPU thread) on a tokenizer's SIDs and the Office interactions, per
training step and per decoded user, for each batch size / history length given:

    python benchmarks/profile_demo_retrieval.py --tokenizer DEMO_OUT/tokenizer --batch-sizes 64,256

Wall and process-CPU seconds, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_info  # noqa: E402
from _paths import OFFICE as DATA, portable  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--batch-sizes", default="64,256")
    ap.add_argument("--histories", default="20")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--decode-users", type=int, default=256)
    ap.add_argument("--beams", default="10")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parent / "results" / "profile_demo_retrieval.json"))
    args = ap.parse_args()

    from tokenizer_kit.companion import RetrievalConfig
    from tokenizer_kit.companion._data import load_sid_index, sequence_split
    from tokenizer_kit.companion._model import GenerativeRetriever

    load_before = os.getloadavg()
    index = load_sid_index(args.tokenizer)
    rows = []
    for threads in [int(x) for x in args.threads.split(",")]:
        for hist in [int(x) for x in args.histories.split(",")]:
            split = sequence_split(str(DATA / "Office.inter.json"), index, max_history=hist)
            for bs in [int(x) for x in args.batch_sizes.split(",")]:
                cfg = RetrievalConfig(batch_size=bs, max_history=hist, cpu_threads=threads)
                r = GenerativeRetriever(index, cfg)
                torch.set_num_threads(threads)
                opt = torch.optim.AdamW(r.model.parameters(), lr=cfg.lr)
                rng = np.random.default_rng(0)
                n = len(split.train_target)

                def step():
                    sel = rng.choice(n, bs, replace=False)
                    b = r._batch([split.train_hist[i] for i in sel], split.train_target[sel])
                    loss = r.model(**b).loss
                    opt.zero_grad()
                    loss.backward()
                    opt.step()

                r.model.train()
                step()
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(args.steps):
                    step()
                w, c = (time.perf_counter() - w0) / args.steps, (time.process_time() - c0) / args.steps
                row = {"threads": threads, "max_history": hist, "batch_size": bs, "train_examples": n, "step_wall_s": round(w, 4), "step_cpu_s": round(c, 4),
                       "epoch_cpu_s_est": round(c * np.ceil(n / bs), 1)}
                hh, _ = split.subset("test", args.decode_users)
                for beam in [int(x) for x in args.beams.split(",")]:
                    r.config.beam_size = beam
                    w0, c0 = time.perf_counter(), time.process_time()
                    r.generate_sids(hh)
                    row[f"decode_beam{beam}_cpu_s_per_user"] = round((time.process_time() - c0) / len(hh), 5)
                    row[f"decode_beam{beam}_wall_s_per_user"] = round((time.perf_counter() - w0) / len(hh), 5)
                r.config.beam_size = 10
                rows.append(row)
                print(json.dumps(row), flush=True)
    res = {"benchmark": "profile_demo_retrieval", "command": portable("python " + " ".join(sys.argv)), "load_before": load_before, "load_after": os.getloadavg(), "rows": rows, "machine": machine_info()}
    Path(args.results).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
