"""Embedding and catalogue readers with their one-line errors."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenizer_kit.errors import InputError
from tokenizer_kit.io import (
    atomic_write,
    item_categories,
    load_embeddings,
    read_catalog,
    read_interactions,
    top_category,
)


def test_npy_with_ids_beside(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "e.npy", x)
    (tmp_path / "e.ids.txt").write_text("a\nb\nc\nd\n")
    e = load_embeddings(tmp_path / "e.npy")
    assert e.ids.tolist() == ["a", "b", "c", "d"]
    assert isinstance(e.vectors, np.memmap) or e.vectors.base is not None  # memory-mapped
    np.testing.assert_array_equal(e.vectors, x)


def test_npy_without_ids_is_an_error_unless_row_ids(tmp_path):
    np.save(tmp_path / "e.npy", np.ones((3, 2), np.float64))
    with pytest.raises(InputError, match="no ids file.*row_ids"):
        load_embeddings(tmp_path / "e.npy")
    e = load_embeddings(tmp_path / "e.npy", row_ids=True)
    assert e.ids.tolist() == [0, 1, 2] and e.vectors.dtype == np.float32


@pytest.mark.parametrize("fixed", [True, False])
def test_parquet_list_columns(tmp_path, fixed):
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    typ = pa.list_(pa.float32(), 4) if fixed else pa.list_(pa.float32())
    t = pa.table({"item_id": [f"i{i}" for i in range(5)], "embedding": pa.array(x.tolist(), typ)})
    pq.write_table(t, tmp_path / "e.parquet")
    e = load_embeddings(tmp_path / "e.parquet")
    np.testing.assert_allclose(e.vectors, x)
    assert e.ids.tolist()[0] == "i0"


def test_parquet_custom_columns_and_ragged(tmp_path):
    t = pa.table({"pid": [1, 2], "v": pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32()))})
    pq.write_table(t, tmp_path / "e.parquet")
    with pytest.raises(InputError, match="differ in length"):
        load_embeddings(tmp_path / "e.parquet", id_column="pid", vector_column="v")
    with pytest.raises(InputError, match="no column 'zz'"):
        load_embeddings(tmp_path / "e.parquet", vector_column="zz")


def test_hf_dataset_dir(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"item_id": ["a", "b", "c"], "embedding": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]})
    ds.save_to_disk(str(tmp_path / "ds"))
    e = load_embeddings(tmp_path / "ds")
    assert e.ids.tolist() == ["a", "b", "c"] and e.vectors.shape == (3, 2)


def test_sharded_npy_dir(tmp_path):
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "part-0.npy", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "d" / "part-1.npy", np.ones((3, 3), np.float32))
    e = load_embeddings(tmp_path / "d", row_ids=True)
    assert e.vectors.shape == (5, 3) and e.ids.tolist() == [0, 1, 2, 3, 4]


def test_bad_embeddings(tmp_path):
    x = np.ones((4, 3), np.float32)
    x[2, 1] = np.inf
    np.save(tmp_path / "inf.npy", x)
    with pytest.raises(InputError, match="row 2 contains inf"):
        load_embeddings(tmp_path / "inf.npy", row_ids=True)
    np.save(tmp_path / "r3.npy", np.ones((2, 2, 2), np.float32))
    with pytest.raises(InputError, match="expected a 2-D array"):
        load_embeddings(tmp_path / "r3.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3), np.float32))
    with pytest.raises(InputError, match="empty input"):
        load_embeddings(tmp_path / "empty.npy")
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with pytest.raises(InputError, match="expected numeric vectors"):
        load_embeddings(tmp_path / "s.npy")
    np.save(tmp_path / "d.npy", np.ones((3, 2), np.float32))
    (tmp_path / "d.ids.txt").write_text("x\ny\nx\n")
    with pytest.raises(InputError, match="duplicate item id 'x'"):
        load_embeddings(tmp_path / "d.npy")
    (tmp_path / "e.ids.txt").write_text("x\ny\n")
    np.save(tmp_path / "e.npy", np.ones((3, 2), np.float32))
    with pytest.raises(InputError, match="2 item ids for 3 vectors"):
        load_embeddings(tmp_path / "e.npy")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet"):
        load_embeddings(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="does not exist"):
        load_embeddings(tmp_path / "missing.npy")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(InputError, match="unsupported embeddings file type"):
        load_embeddings(tmp_path / "x.csv")


def test_lcrec_office(office_dir):
    items = read_catalog(office_dir / "Office.item.json")
    assert items.num_rows == 2420
    assert {"item_id", "title", "description", "brand", "categories"} <= set(items.column_names)
    cats = item_categories(items)
    assert len(cats) == 2420 and cats["0"] == "Office Electronics"
    inter = read_interactions(office_dir / "Office.inter.json")
    assert inter.num_rows == 53258
    assert len(set(inter.column("user_id").to_pylist())) == 4905


def test_catalog_duplicates_and_missing_column(tmp_path):
    pq.write_table(pa.table({"item_id": ["a", "a"], "title": ["x", "y"]}), tmp_path / "c.parquet")
    with pytest.raises(InputError, match="duplicate item id 'a'"):
        read_catalog(tmp_path / "c.parquet")
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "n.parquet")
    with pytest.raises(InputError, match="no 'item_id' column"):
        read_catalog(tmp_path / "n.parquet")
    (tmp_path / "bad.item.json").write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        read_catalog(tmp_path / "bad.item.json")


def test_top_category():
    assert top_category("A, B, C") == "A"
    assert top_category(["X", "Y"]) == "X"
    assert top_category("A > B") == "A"
    assert top_category("") is None and top_category(None) is None


def test_atomic_write_keeps_old_on_error(tmp_path):
    p = tmp_path / "f.json"
    p.write_text(json.dumps({"v": 1}))
    with pytest.raises(RuntimeError):
        with atomic_write(p) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("crash")
    assert json.loads(p.read_text()) == {"v": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["f.json"]


@pytest.mark.slow
def test_committed_office_embeddings_match_minilm(office_dir, office_emb):
    """tests/data/office_minilm_f16.npy is what benchmarks/make_office_embeddings.py makes."""
    from tokenizer_kit.features import embed_texts, item_texts

    ids, x = office_emb
    fields = ["title", "description", "brand", "categories"]
    table = read_catalog(office_dir / "Office.item.json")
    assert table.column("item_id").to_pylist() == ids.tolist()
    rows = [0, 1, 500, 1234, 2419]
    fresh = embed_texts(item_texts([table.slice(r, 1).select(fields).to_pylist()[0] for r in rows], fields))
    cos = (fresh * x[rows]).sum(1) / np.linalg.norm(x[rows], axis=1)
    assert (cos > 0.999).all()
