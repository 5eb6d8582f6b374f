"""Ids you can trust: no silent row numbers, ids keep the catalogue's type, --split picks a
split of a saved DatasetDict, and SIDs load as a DataFrame / datasets.Dataset in one call."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tokenizer_kit import load_sids
from tokenizer_kit.cli.app import app
from tokenizer_kit.errors import InputError
from tokenizer_kit.io import make_clustered_embeddings, read_catalog

runner = CliRunner()


def _parquet(path, ids, x):
    pq.write_table(pa.table({"item_id": ids, "embedding": pa.array(list(x), pa.list_(pa.float32()))}), path)
    return path


@pytest.mark.parametrize("kind", ["int", "str"])
def test_ids_keep_their_type_through_build_assign_and_load(tmp_path, kind):
    import pandas as pd

    x = make_clustered_embeddings(500, 8, seed=0)
    ids = list(range(1000, 1500)) if kind == "int" else [f"{k:05d}" for k in range(500)]  # "00042": digits, still strings
    catalogue = pd.DataFrame({"item_id": ids, "title": [f"item {k}" for k in range(500)]})
    emb = _parquet(tmp_path / "e.parquet", ids[:450], x[:450])
    r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "tok"), "--codebook-size", "8", "-q"])
    assert r.exit_code == 0, r.output
    sids = load_sids(tmp_path / "tok")
    assert sids["item_id"].dtype == catalogue["item_id"].dtype  # int64 / object (str)
    joined = catalogue.merge(sids, on="item_id")
    assert len(joined) == 450 and joined["sid"].str.startswith("<a_").all()
    new = _parquet(tmp_path / "n.parquet", ids[450:], x[450:])
    r = runner.invoke(app, ["assign", str(new), "-t", str(tmp_path / "tok"), "--out", str(tmp_path / "n_sids.parquet"), "--update", "-q"])
    assert r.exit_code == 0, r.output
    out = load_sids(tmp_path / "n_sids.parquet")
    assert out["item_id"].tolist() == ids[450:] and len(catalogue.merge(out, on="item_id")) == 50
    assert len(load_sids(tmp_path / "tok")) == 500  # the index holds the cold-started items too


def test_load_sids_formats(tmp_path):
    import datasets
    import pandas as pd

    x = make_clustered_embeddings(300, 8, seed=1)
    emb = _parquet(tmp_path / "e.parquet", [f"i{k}" for k in range(300)], x)
    r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "tok"), "--codebook-size", "4", "--levels", "2", "-q"])
    assert r.exit_code == 0, r.output
    df = load_sids(tmp_path / "tok")
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["item_id", "code_0", "code_1", "code_2", "sid"]  # suffix level
    assert df["sid"].is_unique  # the index's SIDs: one item per SID
    ds = load_sids(tmp_path / "tok", format="datasets")
    assert isinstance(ds, datasets.Dataset) and ds.num_rows == 300 and ds[0]["sid"] == df["sid"][0]
    assert isinstance(load_sids(tmp_path / "tok", format="arrow"), pa.Table)
    r = runner.invoke(app, ["index", str(tmp_path / "tok"), "--export-lcrec", str(tmp_path / "tok.index.json"), "-q"])
    assert r.exit_code == 0, r.output
    lc = load_sids(tmp_path / "tok.index.json")
    assert sorted(lc["sid"]) == sorted(df["sid"])
    with pytest.raises(InputError, match="format must be one of"):
        load_sids(tmp_path / "tok", format="csv")
    with pytest.raises(InputError, match="does not exist"):
        load_sids(tmp_path / "nope")


def test_missing_ids_are_an_error_unless_row_ids(tmp_path):
    x = make_clustered_embeddings(300, 8, seed=2)
    pq.write_table(pa.table({"embedding": pa.array(list(x), pa.list_(pa.float32()))}), tmp_path / "noid.parquet")
    r = runner.invoke(app, ["build-codebook", str(tmp_path / "noid.parquet"), "--out", str(tmp_path / "t"), "--codebook-size", "4"])
    assert r.exit_code == 1 and "no 'item_id' column" in r.stderr and "--row-ids" in r.stderr and not (tmp_path / "t").exists()
    r = runner.invoke(app, ["build-codebook", str(tmp_path / "noid.parquet"), "--out", str(tmp_path / "t"), "--codebook-size", "4",
                            "--row-ids", "-q"])
    assert r.exit_code == 0, r.output
    assert load_sids(tmp_path / "t")["item_id"].tolist() == list(range(300))


def test_split_of_a_dataset_dict(tmp_path):
    import datasets

    x = make_clustered_embeddings(400, 8, seed=3)
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"item_id": [f"t{k}" for k in range(300)], "embedding": x[:300].tolist()}),
        "new": datasets.Dataset.from_dict({"item_id": [f"n{k}" for k in range(100)], "embedding": x[300:].tolist()}),
    })
    dd.save_to_disk(str(tmp_path / "dd"))
    r = runner.invoke(app, ["build-codebook", str(tmp_path / "dd"), "--out", str(tmp_path / "tok"), "--codebook-size", "4", "-q"])
    assert r.exit_code == 0, r.output  # the train split by default
    assert load_sids(tmp_path / "tok")["item_id"].str.startswith("t").all()
    r = runner.invoke(app, ["assign", str(tmp_path / "dd"), "-t", str(tmp_path / "tok"), "--split", "new", "--update",
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["new"] == 100
    r = runner.invoke(app, ["assign", str(tmp_path / "dd"), "-t", str(tmp_path / "tok"), "--split", "nope"])
    assert r.exit_code == 1 and "no split 'nope'" in r.stderr and "['new', 'train']" in r.stderr


def test_catalogue_ids_keep_their_type(tmp_path):
    pq.write_table(pa.table({"item_id": [3, 1, 2], "title": ["c", "a", "b"]}), tmp_path / "cat.parquet")
    assert read_catalog(tmp_path / "cat.parquet").column("item_id").type == pa.string()  # the pipeline's internal form
    assert read_catalog(tmp_path / "cat.parquet", keep_id_type=True).column("item_id").to_pylist() == [3, 1, 2]
    from tokenizer_kit.features._extract import catalog_record

    t = read_catalog(tmp_path / "cat.parquet", keep_id_type=True)
    assert catalog_record(t, ["3", "1", "2"])["id_type"] == "int64"
    assert "id_type" not in catalog_record(read_catalog(tmp_path / "cat.parquet"), ["3", "1", "2"])


@pytest.mark.slow
def test_embed_text_keeps_integer_ids(tmp_path):
    pq.write_table(pa.table({"item_id": [10, 20, 30], "title": ["red pen", "blue pen", "stapler"]}), tmp_path / "cat.parquet")
    r = runner.invoke(app, ["embed-text", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "e.parquet"), "--fields", "title", "-q"])
    assert r.exit_code == 0, r.output
    t = pq.read_table(tmp_path / "e.parquet")
    assert t.column("item_id").type == pa.int64() and t.column("item_id").to_pylist() == [10, 20, 30]
