"""The generative benchmarks' scripts: ``benchmarks/gpu_generative.py`` skips cleanly without
CUDA and runs end to end on a tiny LM (on the GPU when there is one), and
``benchmarks/bench_causal_lm_budget.py`` turns a calibration into step budgets and shares its
jobs between workers."""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_causal_lm import _tiny_lm

from tokenizer_kit.companion import RetrievalConfig

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the benchmarks are scripts, not installed: import them as they import each other
from benchmarks import bench_causal_lm_budget as budget  # noqa: E402
from benchmarks import gpu_generative  # noqa: E402


def test_gpu_script_without_cuda_exits_0_and_says_skipped(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # hides any GPU: the path of a machine without one
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_generative.py"), "--out", str(tmp_path / "o")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "no CUDA device: skipped" in p.stdout
    rec = json.loads((tmp_path / "o" / "gpu_generative.json").read_text())
    assert rec["skipped"] is True and rec["reason"] == "no CUDA device: skipped"
    assert "runs" not in rec


def _tiny_run(tmp_path, device: str, office_emb) -> dict:
    from tokenizer_kit import SemanticTokenizer

    ids, x = office_emb
    tok = tmp_path / "tok"
    SemanticTokenizer.build(x, ids=ids, codebook_sizes=[16, 16, 16], seed=0).save_pretrained(tok)
    lm = _tiny_lm(tmp_path / "lm")
    argv = ["--out", str(tmp_path / "o"), "--sids", str(tok), "--model", str(lm), "--device", device, "--max-users", "150",
            "--t5-seconds", "0.5", "--lm-seconds", "0.5", "--calib-steps", "3", "--validations", "1", "--lm-batch", "8",
            "--lm-eval-batch", "8", "--lm-eval-users", "8"]
    assert gpu_generative.main(argv) == 0
    return json.loads((tmp_path / "o" / "gpu_generative.json").read_text())


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=pytest.mark.gpu), pytest.param("cpu", marks=pytest.mark.slow)])
def test_gpu_script_runs_both_companions_in_their_step_budgets(tmp_path, device, office_emb):
    rec = _tiny_run(tmp_path, device, office_emb)
    assert rec["skipped"] is False and set(rec["runs"]) == {"tiger", "smollm2-lora"}
    for name, r in rec["runs"].items():
        b = r["budget"]
        assert r["config"]["max_steps"] == b["planned_steps"] >= 1
        assert b["steps_run"] == b["planned_steps"], name  # the epochs hold the planned steps
        assert r["device"].startswith(device)
        assert 0.0 <= r["test"]["item_hit@10"] <= 1.0
    assert rec["runs"]["tiger"]["config"]["d_model"] == RetrievalConfig.preset("tiger").d_model
    assert rec["runs"]["smollm2-lora"]["test"]["users"] == 8
    bf16 = device == "cpu" or torch.cuda.is_bf16_supported()
    assert rec["runs"]["smollm2-lora"]["budget"]["precision"] == ("bf16-autocast" if bf16 else "fp32")


def _args(**over):
    a = argparse.Namespace(eval_users=50, model="smollm2", budget_list=[1.0, 2.5], set_list=["aligned", "raw"], seed_list=[0, 1])
    for k, v in over.items():
        setattr(a, k, v)
    return a


CALIB = {"t5": {"cpu_seconds_per_step": 0.2, "steps_per_epoch": 100, "setup_cpu_seconds": 1.0, "decode_cpu_seconds_per_user": 0.01,
                "test_users": 4905},
         "smollm2-lora": {"cpu_seconds_per_step": 7.0, "steps_per_epoch": 3000, "setup_cpu_seconds": 10.0,
                          "decode_cpu_seconds_per_user": 0.5, "test_users": 4905}}


def test_budget_plan_sizes_steps_from_the_calibration():
    jobs = budget.plan_jobs(_args(), CALIB)
    assert len(jobs) == 2 * 2 * (1 + 2 * 2)  # seeds x sets x (default + budgets x models)
    by = {(j["set"], j["run"], j["seed"]): j for j in jobs}
    t5, lm = by[("raw", "t5-2.5min", 1)], by[("raw", "smollm2-lora-2.5min", 1)]
    assert t5["planned_steps"] == t5["config"]["max_steps"] == 750  # 150 CPU s / 0.2
    assert t5["config"]["epochs"] == 8  # enough epochs to hold the steps
    assert lm["planned_steps"] == round(150 / 7.0) and lm["config"]["epochs"] == 1 and lm["config"]["arch"] == "causal-lm"
    assert by[("aligned", "t5-default", 0)]["config"] == RetrievalConfig(max_eval_users=50, cpu_threads=1).to_dict()
    assert {j["config"]["max_eval_users"] for j in jobs} == {50}  # every run scores the same users: paired
    for j in jobs:
        RetrievalConfig.from_dict(j["config"])  # valid
    # the estimate grows with the budgets
    assert budget.estimate(jobs, CALIB, 50) > budget.estimate(budget.plan_jobs(_args(budget_list=[1.0]), CALIB), CALIB, 50)


def test_budget_workers_cover_every_job_once_each_starting_on_its_share():
    jobs = [{"n": i} for i in range(7)]
    orders = [budget._order(jobs, f"{i}/3") for i in range(3)]
    for i, o in enumerate(orders):
        assert sorted(j["n"] for j in o) == list(range(7))
        assert [j["n"] for j in o[: len(jobs[i::3])]] == [j["n"] for j in jobs[i::3]]
    with pytest.raises(SystemExit):
        budget._order(jobs, "3/3")


def test_task_clock_times_each_task_and_forwards_it():
    seen = []

    class Inner:
        def task(self, description, total=None, *, unit="item", completed=0):
            class T:
                def advance(self, n=1, **m):
                    seen.append((description, n))

                def close(self):
                    seen.append((description, "closed"))
            return T()

    clock = budget.TaskClock(Inner(), marks=True, clock=time.perf_counter)
    with clock.task("retrieval train", 3) as t:
        for _ in range(3):
            time.sleep(0.01)
            t.advance(1, loss=1.0)
    rec = clock.tasks["retrieval train"]
    assert rec["count"] == 3 and len(rec["marks"]) == 3 and rec["seconds"] >= 0.03
    assert seen == [("retrieval train", 1)] * 3 + [("retrieval train", "closed")]
