import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from _align_helpers import cli_app, clustered_store, one_torch_thread, tiny_lm_dir  # noqa: F401
from tokenizer_kit.io import load_embeddings


@pytest.fixture(scope="module")
def slice_data(tmp_path_factory):
    """Users who click within one cluster of items; a store and a catalogue for those items."""
    d = tmp_path_factory.mktemp("cli")
    store, ids, cluster = clustered_store(d / "store", n_items=48, n_clusters=6)
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(120):
        c = u % 6
        members = [i for i in range(48) if cluster[i] == c]
        for t, i in enumerate(rng.choice(members, size=6, replace=False)):
            users.append(f"u{u}")
            items.append(ids[i])
            ts.append(t)
    pq.write_table(pa.table({"user_id": users, "item_id": items, "timestamp": ts}), d / "inter.parquet")
    names = ["stapler black", "pen blue", "paper office", "stapler blue", "pen black", "paper black"]
    pq.write_table(pa.table({"item_id": ids, "title": [names[c] for c in cluster], "brand": ["office"] * 48}), d / "catalog.parquet")
    return d


def _run(args):
    r = CliRunner().invoke(cli_app(), args)
    return r


def test_cli_end_to_end(slice_data, tmp_path):
    d = slice_data
    r = _run(["mine-pairs", str(d / "inter.parquet"), "--out", str(tmp_path / "pairs.parquet"), "--heldout-out", str(tmp_path / "held.parquet"), "--swing-topk", "5", "--u2i-targets", "1", "--format", "json"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout)
    assert stats["pairs"]["swing"] > 0 and stats["pairs"]["u2i"] == 120 and stats["heldout"]["pairs"] == 120
    assert stats["coverage"]["all"] > 0.9
    r = _run([
        "align", "--features", str(d / "store"), "--pairs", str(tmp_path / "pairs.parquet"), "--eval-pairs", str(tmp_path / "held.parquet"),
        "--catalog", str(d / "catalog.parquet"), "--caption-lm", str(tiny_lm_dir(tmp_path / "lm")), "--caption-weight", "0.5",
        "--out", str(tmp_path / "al"), "--steps", "6", "--batch-size", "16", "--d-model", "16", "--n-queries", "2", "--n-layers", "1", "--n-heads", "2",
        "--format", "json",
    ])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["steps_done"] == 6 and res["eval"]["n_pairs"] == 120
    assert "caption_loss_with_prefix" in res["eval"]
    assert (tmp_path / "al" / "metrics.jsonl").exists() and (tmp_path / "al" / "checkpoint" / "trainer_state.pt").exists()
    r = _run(["embed", "--features", str(d / "store"), "--alignment", str(tmp_path / "al"), "--out", str(tmp_path / "emb.parquet"), "--pooling", "flatten", "--format", "json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    emb = load_embeddings(tmp_path / "emb.parquet")
    assert emb.vectors.shape == (48, 32) and rec["dim"] == 32 and rec["pooling"] == "flatten"
    meta = json.loads(pq.read_schema(tmp_path / "emb.parquet").metadata[b"tokenizer_kit"])
    assert meta["n_queries"] == 2 and meta["pooling"] == "flatten"
    # a finished output is not overwritten silently
    r = _run(["embed", "--features", str(d / "store"), "--alignment", str(tmp_path / "al"), "--out", str(tmp_path / "emb.parquet")])
    assert r.exit_code == 1 and "already exists" in r.output


def test_cli_errors_are_one_line(slice_data, tmp_path):
    d = slice_data
    _run(["mine-pairs", str(d / "inter.parquet"), "--out", str(tmp_path / "p.parquet")])
    r = _run(["align", "--features", str(d / "store"), "--pairs", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "a"), "--steps", "2"])
    assert r.exit_code == 2
    assert "--catalog" in r.output and len(r.output.strip().splitlines()) == 1
    r = _run(["align", "--features", str(d / "store"), "--pairs", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "a"), "--caption-weight", "0", "--steps", "0", "--lr", "-1"])
    assert r.exit_code == 2 and "steps" in r.output and "lr" in r.output
    r = _run(["mine-pairs", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "q.parquet")])
    assert r.exit_code == 1 and "does not exist" in r.output
