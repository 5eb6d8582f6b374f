"""One short look at the causal-LM companion on Office: SmolLM2-135M (LoRA, a step budget)
against the T5 companion at its default and at about the same wall time; one seed.

SIDs: RQ-Kmeans with its defaults (3 x 256 codes, suffix index) on the bundled MiniLM
embeddings of the Office items (``tests/data/office_minilm_f16.npy``), built in a temporary
directory. Every run scores the same first ``--eval-users`` test users of the one
leave-one-out split, so they are paired user by user (``summarize_runs``). Wall times
depend on the machine's load: the 1-minute load average before and after each run is
recorded with it. Usage::

    python benchmarks/bench_causal_lm_office.py --out benchmarks/results/causal_lm_office_short.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine_info  # noqa: E402
from tokenizer_kit.companion import RetrievalConfig, evaluate_retrieval, summarize_runs  # noqa: E402
from tokenizer_kit.io import atomic_write_json  # noqa: E402

INTER = ROOT / "data" / "amazon-office" / "Office.inter.json"
EMB = ROOT / "tests" / "data" / "office_minilm_f16.npy"


def _tokenizer(d: Path) -> Path:
    from tokenizer_kit import SemanticTokenizer

    ids = (EMB.parent / "office_minilm_f16.ids.txt").read_text().split()
    SemanticTokenizer.build(np.load(EMB).astype(np.float32), ids=ids).save_pretrained(d / "tok")
    return d / "tok"


def _run(name: str, tok: Path, cfg: RetrievalConfig, max_users: int | None) -> dict:
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = evaluate_retrieval(tok, INTER, cfg, max_users=max_users)
    res["wall_seconds"] = time.perf_counter() - t0
    res["sids"] = "<tmp>/tok"  # the script's temporary tokenizer directory
    res["load_average_1min"] = [load0, os.getloadavg()[0]]
    logging.info("%s: %.0fs, item_hit@10 %.4f", name, res["wall_seconds"], res["test"]["item_hit@10"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--eval-users", type=int, default=300)
    ap.add_argument("--lm-steps", type=int, default=40, help="training steps of the causal LM (batch 16)")
    ap.add_argument("--t5-epochs", type=int, default=12, help="epochs of the longer T5 run (about the LM's wall time)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-users", type=int, default=None, help="only the first N users (a smoke test)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    common = dict(max_eval_users=a.eval_users, seed=a.seed, cpu_threads=1)
    configs = {
        "t5-default": RetrievalConfig(**common),
        f"t5-{a.t5_epochs}ep": RetrievalConfig(**common, epochs=a.t5_epochs),
        f"smollm2-lora-{a.lm_steps}steps": RetrievalConfig(
            **common, arch="causal-lm", model="smollm2", finetune="lora", lr=1e-3, batch_size=16, eval_batch_size=16,
            max_history=10, max_steps=a.lm_steps),
    }
    with tempfile.TemporaryDirectory() as d:
        tok = _tokenizer(Path(d))
        runs = {name: [_run(name, tok, cfg, a.max_users)] for name, cfg in configs.items()}
    summary = summarize_runs(runs, reference="t5-default")
    summary["runs"] = {n: [{k: v for k, v in r.items() if k != "test_users"} for r in rs] for n, rs in runs.items()}
    summary["wall_seconds"] = {n: rs[0]["wall_seconds"] for n, rs in runs.items()}
    summary["machine"] = machine_info()
    summary["setup"] = {"sids": "RQ-Kmeans defaults (3 x 256, suffix) on the bundled Office MiniLM embeddings", **vars(a),
                        "out": str(a.out)}
    atomic_write_json(a.out, json.loads(json.dumps(summary, default=str)))
    for n in runs:
        s = summary["sets"][n]
        print(f"{n:28s} item_hit@10 {s['item_hit@10']['mean']:.4f} [{s['item_hit@10']['lo']:.4f}, {s['item_hit@10']['hi']:.4f}] "
              f"item_ndcg@10 {s['item_ndcg@10']['mean']:.4f}  wall {summary['wall_seconds'][n]:.0f}s")


if __name__ == "__main__":
    main()
