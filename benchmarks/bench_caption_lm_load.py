"""Loading the default caption LM (SmolLM2-135M from its GGUF): transformers' own load vs
``load_caption_lm`` (which has gguf-py parse the file once and build its tensor-name map once).

Each load runs in a fresh interpreter (imports and all, as the align stage pays them), the
two ways alternating, ``--reps`` times each; wall and process-CPU seconds, with the load
average before and after each:

    python benchmarks/bench_caption_lm_load.py --reps 2 --out benchmarks/results/caption_lm_load.json

On a shared machine compare CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHILD = r"""
import json, os, sys, time
w0, c0 = time.perf_counter(), time.process_time()
import torch
torch.set_num_threads(1)
from tokenizer_kit.alignment._caption import default_caption_lm, load_caption_lm
if sys.argv[1] == "transformers":
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path, gguf_file = default_caption_lm().split("::", 1)
    tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype=torch.float32)
else:
    model, tok = load_caption_lm(None)
n = sum(p.numel() for p in model.parameters())
s = sum(float(p.double().sum()) for p in model.parameters())
print(json.dumps({"wall_s": round(time.perf_counter() - w0, 2), "cpu_s": round(time.process_time() - c0, 2), "parameters": n, "weight_sum": s, "vocab": len(tok)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from _machine import machine_info
    from _paths import portable

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    runs = []
    for rep in range(args.reps):
        for mode in ("transformers", "load_caption_lm"):
            load0 = os.getloadavg()
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True)
            row = {"mode": mode, "rep": rep, **json.loads(p.stdout.strip().splitlines()[-1]),
                   "process_wall_s": round(time.perf_counter() - t0, 2), "load_before": load0, "load_after": os.getloadavg()}
            runs.append(row)
            print(json.dumps(row), flush=True)
    same = len({(r["parameters"], r["weight_sum"], r["vocab"]) for r in runs}) == 1
    cpu = {m: sorted(r["cpu_s"] for r in runs if r["mode"] == m) for m in ("transformers", "load_caption_lm")}
    res = {"benchmark": "caption_lm_load", "command": portable("python " + " ".join(sys.argv)), "machine": machine_info(), "runs": runs,
           "same_weights_and_vocab": same, "cpu_s": cpu,
           "cpu_ratio_median": (cpu["transformers"][len(cpu["transformers"]) // 2] / cpu["load_caption_lm"][len(cpu["load_caption_lm"]) // 2])}
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in ("same_weights_and_vocab", "cpu_s", "cpu_ratio_median")}))


if __name__ == "__main__":
    main()
