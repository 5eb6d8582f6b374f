"""build-codebook / assign / report end to end with CliRunner and parsed JSON."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tokenizer_kit.cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def office_npy(tmp_path_factory, office_emb):
    ids, x = office_emb
    d = tmp_path_factory.mktemp("emb")
    np.save(d / "office.npy", x)
    (d / "office.ids.txt").write_text("\n".join(ids) + "\n")
    return d / "office.npy"


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_build_assign_report(office_npy, office_dir, tmp_path):
    tok = tmp_path / "tok"
    out = _json(runner.invoke(app, ["build-codebook", str(office_npy), "--out", str(tok), "--balanced", "--no-index", "--format", "json",
                                   "--categories", str(office_dir / "Office.item.json")]))
    t = out["tokenizers"][0]
    assert t["n_items"] == 2420 and t["collision_rate"] <= 0.02
    assert [l["codebook_size"] for l in t["levels"]] == [256, 256, 256]
    assert 0 <= t["category_nmi"] <= 1
    a = _json(runner.invoke(app, ["assign", str(office_npy), "--tokenizer", str(tok), "--out", str(tmp_path / "s.parquet"), "--format", "json"]))
    assert a["n_items"] == 2420 and a["already_indexed_items"] == 2420
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.num_rows == 2420 and table.column_names[-1] == "sid"
    # an LC-Rec index.json from "another tool" reported beside our tokenizer, with HTML
    idx = {str(r["item_id"]): [f"<a_{r['code_0']}>", f"<b_{r['code_1']}>", f"<c_{r['code_2']}>"] for r in table.to_pylist()}
    (tmp_path / "other.index.json").write_text(json.dumps(idx))
    rep = _json(runner.invoke(app, ["report", str(tok), str(tmp_path / "other.index.json"), "--format", "json",
                                    "--html", str(tmp_path / "r.html"), "--embeddings", str(office_npy)]))
    names = [r["name"] for r in rep["tokenizers"]]
    assert names == ["tok", "other.index.json"]
    ours, other = rep["tokenizers"]
    for key in ("name", "n_items", "reconstruction_mse", "reconstruction_relative", "collision_rate", "unique_sids", "largest_bucket"):
        assert key in ours
    assert set(ours["levels"][0]) >= {"codebook_size", "utilization", "entropy_nats", "entropy_bits", "entropy_normalized", "perplexity", "gini"}
    assert ours["reconstruction_relative"] == pytest.approx(t["reconstruction_relative"], rel=1e-4)
    assert other["reconstruction_mse"] is None and other["n_items"] == 2420
    html = (tmp_path / "r.html").read_text()
    assert "<svg" in html and "other.index.json" in html


def test_table_output(office_npy, tmp_path):
    r = runner.invoke(app, ["build-codebook", str(office_npy), "--out", str(tmp_path / "t"), "--codebook-size", "32", "--levels", "2"])
    assert r.exit_code == 0, r.output
    assert "L2 entropy (nats)" in r.stdout


def test_errors_are_one_line(office_npy, tmp_path):
    tok = tmp_path / "tok"
    assert runner.invoke(app, ["build-codebook", str(office_npy), "--out", str(tok), "--codebook-size", "16"]).exit_code == 0
    r = runner.invoke(app, ["build-codebook", str(office_npy), "--out", str(tok)])
    assert r.exit_code == 1 and "already exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = runner.invoke(app, ["build-codebook", str(office_npy), "--out", str(tmp_path / "big"), "--codebook-size", "4096"])
    assert r.exit_code == 1 and "too few items" in r.stderr and "set --codebook-sizes to 512 or fewer" in r.stderr
    bad = tmp_path / "bad.npy"
    x = np.ones((10, 4), np.float32)
    x[3, 0] = np.nan
    np.save(bad, x)
    r = runner.invoke(app, ["assign", str(bad), "--tokenizer", str(tok), "--out", str(tmp_path / "o.parquet"), "--row-ids"])
    assert r.exit_code == 1 and "row 3 contains NaN" in r.stderr
    r = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "does not exist; pass a tokenizer directory" in r.stderr
    r = runner.invoke(app, ["build-codebook", str(office_npy), "--out", str(tmp_path / "m"), "--method", "nope"])
    assert r.exit_code == 2 and "--method must be one of ['rq-kmeans', 'rq-vae'], got 'nope'" in r.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("tokenizer-kit ")
