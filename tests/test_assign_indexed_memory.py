"""The indexed assign (``assign --out`` on a tokenizer that ``build-codebook`` indexed, the
default) in memory that does not grow with the catalogue.

Whole processes through the CLI, peak anonymous resident memory (RssAnon) over the process
tree, as the benchmarks measure it: the known items' SIDs are read from the memory-mapped
index a batch at a time, so what the process holds per catalogue item is a few bytes (the
input ids' hashes for the uniqueness check, the row -> trie position map), not a lookup row.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tokenizer_kit.io import write_clustered_npy

ROOT = Path(__file__).resolve().parents[1]
# new items in the variant with new items: the same number at both sizes, so that only the
# catalogue grows (the placement holds O(new items) by design)
N_NEW = 2000
# rows per batch: a dozen batches or more at both sizes, so that the per-batch memory (Arrow's
# and the allocator's pools) is at its steady state at both and only the catalogue differs
BATCH = 8192


def _peak_rss_anon_mib(cmd: list[str]) -> float:
    """Peak of the summed RssAnon over the process tree of ``cmd`` (the benchmarks' poller, every 20 ms)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_scale import run_measured

    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1"}
    res = run_measured([sys.executable, "-m", "tokenizer_kit.cli.app", *cmd], env=env, interval=0.02)
    assert res["returncode"] == 0, res.get("stderr_tail")
    return res["peak_rss_anon_mib"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc")
def test_indexed_assign_memory_does_not_grow_with_the_catalogue(tmp_path):
    """``assign EMB --tokenizer TOK --out sids.parquet --batch-size 8192`` of a whole catalogue of 100,000 and of
    400,000 items x 16 (built by ``build-codebook --row-ids``, indexed with fingerprints), all
    known, and with 2,000 of its rows given new ids: the larger's peak RssAnon is within 24 MiB
    of the smaller's (measured +1.7 all known and +4.6 to +6.6 with new items on 2 cores, +9.9
    and +6.5 with one thread and OPENBLAS_CORETYPE=Sandybridge; the same all-known assign
    without ``--out``, the in-memory round with a lookup row per item, grows by 220 MiB)."""
    peaks = {}
    for n in (100_000, 400_000):
        x, tok = tmp_path / f"x{n}.npy", tmp_path / f"t{n}"
        write_clustered_npy(x, n, 16, seed=1)
        _peak_rss_anon_mib(["build-codebook", str(x), "--levels", "3", "--codebook-size", "64", "--row-ids", "--out", str(tok),
                            "--format", "json"])
        rows = np.arange(n)
        mixed = tmp_path / f"mix{n}.ids.npy"
        np.save(mixed, np.where((rows % 10 == 9) & (rows < 10 * N_NEW), n + rows, rows))  # every 10th of the first rows is new
        for variant, ids in (("known", ["--row-ids"]), ("new", ["--ids", str(mixed)])):
            out = tmp_path / f"{variant}{n}.parquet"
            peaks[variant, n] = _peak_rss_anon_mib(["assign", str(x), "--tokenizer", str(tok), *ids, "--out", str(out),
                                                    "--batch-size", str(BATCH), "--format", "json"])
            status = pq.read_table(out, columns=["status"]).column("status").to_pylist()
            assert len(status) == n and status.count("new") == (N_NEW if variant == "new" else 0)
    for variant in ("known", "new"):
        assert peaks[variant, 400_000] - peaks[variant, 100_000] < 24, peaks
