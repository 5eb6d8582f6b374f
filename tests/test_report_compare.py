"""The report side by side: best value per row, what each metric means, per-level
reconstruction, collision examples with titles, an external index's SID levels, caveats, and
an HTML page whose plots come from matplotlib (axes included)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tokenizer_kit.cli.app import app
from tokenizer_kit.evaluation._compare import detect_sid_levels
from tokenizer_kit.io import make_clustered_embeddings

runner = CliRunner()


def _lcrec(path, ids, codes):
    letters = "abcdefgh"
    path.write_text(json.dumps({str(i): [f"<{letters[l]}_{int(c)}>" for l, c in enumerate(row)] for i, row in zip(ids, codes)}))
    return path


def _with_suffix(codes: np.ndarray) -> np.ndarray:
    """Another tool's disambiguation: a last level numbering the items of each SID 0, 1, 2, ..."""
    _, inv = np.unique(codes, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    nth = np.zeros(len(codes), np.int64)
    seen: dict[int, int] = {}
    for r, g in enumerate(inv.tolist()):
        nth[r] = seen.get(g, 0)
        seen[g] = nth[r] + 1
    return np.concatenate([codes, nth[:, None]], 1)


def test_detect_sid_levels():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 6, (500, 3))  # collides at 3 levels
    assert detect_sid_levels(_with_suffix(codes)) == 3
    assert detect_sid_levels(codes) == 3  # a real last level: kept
    assert detect_sid_levels(np.arange(10)[:, None]) == 1
    unique = np.stack([np.arange(50), np.zeros(50, np.int64)], 1)  # all zeros last, nothing collides before: ambiguous, kept
    assert detect_sid_levels(unique) == 2


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    ids = [f"i{k}" for k in range(1200)]
    x = make_clustered_embeddings(1200, 16, seed=0)
    pq.write_table(pa.table({"item_id": ids, "embedding": pa.array(list(x), pa.list_(pa.float32()))}), d / "e.parquet")
    pq.write_table(pa.table({"item_id": ids, "title": [f"title {k}" for k in range(1200)],
                             "categories": [f"c{k % 4}" for k in range(1200)]}), d / "cat.parquet")
    for name, extra in (("plain", []), ("bal", ["--balanced"])):
        r = runner.invoke(app, ["build-codebook", str(d / "e.parquet"), "--out", str(d / name), "--codebook-size", "16", "-q", *extra])
        assert r.exit_code == 0, r.output
    codes = np.random.default_rng(1).integers(0, 8, (1200, 3))
    _lcrec(d / "faiss.index.json", ids, _with_suffix(codes))
    raw_collisions = 1 - np.mean(np.unique(codes, axis=0, return_counts=True)[1][np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1)] == 1)
    return d, raw_collisions


def test_external_index_collisions_on_its_sid_levels(env):
    d, raw = env
    r = runner.invoke(app, ["report", str(d / "faiss.index.json"), "--format", "json"])
    rep = json.loads(r.stdout)["tokenizers"][0]
    assert rep["sid_levels"] == 3 and rep["sid_levels_detected"] and rep["disambiguation_levels"] == 1
    assert rep["collision_rate"] == pytest.approx(raw) and raw > 0.1 and rep["collision_rate_all_levels"] == 0.0
    assert len(rep["levels"]) == 3
    r = runner.invoke(app, ["report", str(d / "faiss.index.json"), "--sid-levels", "4", "--format", "json"])
    rep = json.loads(r.stdout)["tokenizers"][0]
    assert rep["collision_rate"] == 0.0 and not rep["sid_levels_detected"]
    r = runner.invoke(app, ["report", str(d / "faiss.index.json"), "--sid-levels", "5"])
    assert r.exit_code == 1 and "--sid-levels 5 but the SIDs have 4 levels" in r.stderr


def test_side_by_side_best_help_recon_examples_caveats(env):
    d, _ = env
    r = runner.invoke(app, ["report", str(d / "plain"), str(d / "bal"), str(d / "faiss.index.json"), "--categories", str(d / "cat.parquet"),
                            "--embeddings", str(d / "e.parquet"), "--format", "json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    rows = {row["metric"]: row for row in rep["comparison"]}
    assert rows["collision_rate"]["best"] == ["bal"] and rows["collision_rate"]["better"] == "min"
    assert rows["reconstruction_mse"]["best"] == ["plain"] and "embedding" in rows["reconstruction_mse"]["help"]
    assert all(row["help"] for row in rep["comparison"])
    plain = rep["tokenizers"][0]
    per = plain["recon_by_level"]
    assert len(per) == 3 and per[0] > per[1] > per[2] and per[2] == pytest.approx(plain["reconstruction_relative"], rel=1e-4)
    ex = plain["collision_examples"][0]
    assert ex["size"] == plain["largest_bucket"] and ex["items"][0]["title"].startswith("title ")
    assert any("disambiguation level" in c for c in rep["caveats"])
    assert not any("embedding spaces" in c for c in rep["caveats"])  # one set of vectors for all
    r = runner.invoke(app, ["report", str(d / "plain"), str(d / "bal")], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "*" in r.stdout and "best value of the row" in r.stdout


def test_caveat_when_embedding_spaces_differ(env, tmp_path):
    d, _ = env
    x = make_clustered_embeddings(600, 8, seed=4)
    pq.write_table(pa.table({"item_id": [f"i{k}" for k in range(600)], "embedding": pa.array(list(x), pa.list_(pa.float32()))}),
                   tmp_path / "other.parquet")
    assert runner.invoke(app, ["build-codebook", str(tmp_path / "other.parquet"), "--out", str(tmp_path / "o"), "--codebook-size", "8",
                               "-q"]).exit_code == 0
    rep = json.loads(runner.invoke(app, ["report", str(d / "plain"), str(tmp_path / "o"), "--format", "json"]).stdout)
    cav = [c for c in rep["caveats"] if "different embedding spaces" in c]
    assert len(cav) == 1 and "d=16" in cav[0] and "d=8" in cav[0]


def test_html_side_by_side_with_matplotlib_plots(env, tmp_path):
    from tokenizer_kit.evaluation import build_report, render_html, report_target

    d, _ = env
    r = runner.invoke(app, ["report", str(d / "plain"), str(d / "bal"), str(d / "faiss.index.json"), "--categories", str(d / "cat.parquet"),
                            "--embeddings", str(d / "e.parquet"), "--html", str(tmp_path / "r.html"), "-q"])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") >= 7 and "matplotlib" in page  # 3 levels x 2 + buckets, drawn by matplotlib
    assert "code rank" in page and "items sharing a SID" in page and "reconstruction by level" in page  # axes labels
    assert "class=best" in page and "what it means" in page and "class=caveat" in page
    assert "Largest SID buckets" in page and "title " in page and "<script" not in page
    # no collisions: a sentence, not an empty plot
    rep, codes, sizes = report_target(d / "faiss.index.json", sid_levels=4, return_codes=True)
    render_html(build_report([rep]), tmp_path / "u.html", codes={rep["name"]: (codes, sizes)},
                extra={"alignment: held-out evaluation": {"recall@10": 0.31}})
    page = (tmp_path / "u.html").read_text()
    assert "No collisions: every SID holds one item." in page and "recall@10" in page and "0.3100" in page
