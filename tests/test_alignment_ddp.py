import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _align_helpers import clustered_store


@pytest.mark.slow
def test_ddp_two_cpu_processes_gloo(tmp_path):
    clustered_store(tmp_path / "store")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(Path(__file__).with_name("_ddp_worker.py")), str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    s0 = json.loads((tmp_path / "summary-0.json").read_text())
    s1 = json.loads((tmp_path / "summary-1.json").read_text())
    assert s0["world_size"] == s1["world_size"] == 2
    assert s0["ranks_in_sync"] and s1["ranks_in_sync"]
    assert s0["steps_done"] == 6 and "eval" in s0 and "eval" not in s1  # rank 0 evaluates and writes
    assert (tmp_path / "out" / "model.safetensors").exists()
    meta = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert meta["summary"]["world_size"] == 2
