"""SemanticTokenizer: build, save -> load round trip, corrupt / newer / partial artifacts."""

import json

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer, parse_sid_string, sid_string
from tokenizer_kit.errors import ArtifactError, InputError
from tokenizer_kit.io import seal


@pytest.fixture(scope="module")
def built(clustered):
    ids = np.array([f"item{i}" for i in range(len(clustered))], dtype=object)
    return SemanticTokenizer.build(clustered, ids=ids, codebook_sizes=[16, 16, 16], normalize=True, seed=2, index=False)


def test_round_trip(built, clustered, tmp_path):
    p = built.save_pretrained(tmp_path / "tok")
    tok = SemanticTokenizer.from_pretrained(p)
    assert tok.codebook_sizes == [16, 16, 16] and tok.normalize and tok.method == "rq-kmeans"
    np.testing.assert_array_equal(tok.codes, built.codes)
    assert tok.item_ids.tolist() == built.item_ids.tolist()
    np.testing.assert_array_equal(tok.encode(clustered[:100]), built.encode(clustered[:100]))
    np.testing.assert_array_equal(tok.decode(built.codes[:50]), built.decode(built.codes[:50]))
    m = json.loads((p / "manifest.json").read_text())
    assert m["format_version"] == 2 and m["format"] == "tokenizer-kit/tokenizer" and m["input_dim"] == 32 and set(m["files"]) == {"quantizer.safetensors", "sids.parquet"}
    assert tok.sid_strings()[0] == sid_string(built.codes[0])
    assert parse_sid_string(tok.sid_strings()[0]) == built.codes[0].tolist()


def test_sids_parquet_layout(built, tmp_path):
    import pyarrow.parquet as pq

    p = built.save_pretrained(tmp_path / "tok")
    t = pq.read_table(p / "sids.parquet")
    assert t.column_names == ["item_id", "code_0", "code_1", "code_2", "sid"]
    row = t.slice(0, 1).to_pylist()[0]
    assert row["sid"] == f"<a_{row['code_0']}><b_{row['code_1']}><c_{row['code_2']}>"


def test_metrics_recorded(built):
    m = built.metrics
    assert 0 < m["reconstruction_relative"] < 1
    assert len(m["levels"]) == 3 and all(0 < l["utilization"] <= 1 for l in m["levels"])


def test_existing_dir_kept_without_overwrite(built, tmp_path):
    p = built.save_pretrained(tmp_path / "tok")
    before = (p / "manifest.json").read_text()
    with pytest.raises(ArtifactError, match="already exists; set `overwrite` to replace it"):
        built.save_pretrained(p)
    assert (p / "manifest.json").read_text() == before
    built.save_pretrained(p, overwrite=True)
    SemanticTokenizer.from_pretrained(p)


def test_failed_save_leaves_previous_whole(built, tmp_path, monkeypatch):
    p = built.save_pretrained(tmp_path / "tok")
    snapshot = {f.name: f.read_bytes() for f in p.iterdir()}

    def boom(self, directory):
        (directory / "quantizer.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(SemanticTokenizer, "write_files", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        built.save_pretrained(p, overwrite=True)
    assert {f.name: f.read_bytes() for f in p.iterdir()} == snapshot
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]  # no staging (and no lock) left behind
    monkeypatch.undo()
    SemanticTokenizer.from_pretrained(p)


def test_checksum_mismatch(built, tmp_path):
    p = built.save_pretrained(tmp_path / "tok")
    data = bytearray((p / "sids.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (p / "sids.parquet").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sids.parquet fails its checksum"):
        SemanticTokenizer.from_pretrained(p)


def test_missing_file(built, tmp_path):
    p = built.save_pretrained(tmp_path / "tok")
    (p / "quantizer.safetensors").unlink()
    with pytest.raises(ArtifactError, match="quantizer.safetensors is missing"):
        SemanticTokenizer.from_pretrained(p)


def test_corrupt_manifest(built, tmp_path):
    p = built.save_pretrained(tmp_path / "tok")
    (p / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="manifest.json is corrupt"):
        SemanticTokenizer.from_pretrained(p)


def test_newer_format_refused(built, tmp_path):
    p = built.save_pretrained(tmp_path / "tok")
    m = json.loads((p / "manifest.json").read_text())
    m["format_version"] = 99
    (p / "manifest.json").write_text(json.dumps(seal(m)))
    with pytest.raises(ArtifactError, match="format 99, newer than"):
        SemanticTokenizer.from_pretrained(p)


def test_newer_package_warns(built, tmp_path, caplog):
    p = built.save_pretrained(tmp_path / "tok")
    m = json.loads((p / "manifest.json").read_text())
    m["package_version"] = "99.0.0"
    (p / "manifest.json").write_text(json.dumps(seal(m)))
    SemanticTokenizer.from_pretrained(p)
    assert any("newer than" in r.message for r in caplog.records)


def test_not_a_directory(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        SemanticTokenizer.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="has no manifest.json"):
        SemanticTokenizer.from_pretrained(tmp_path / "empty")


def test_attachments_and_sections_round_trip(built, tmp_path):
    built.attachments["extra"] = {"a": np.arange(5, dtype=np.int64)}
    built.sections["notes"] = {"policy": "none", "version": 1}
    try:
        p = built.save_pretrained(tmp_path / "tok")
        tok = SemanticTokenizer.from_pretrained(p)
        np.testing.assert_array_equal(tok.attachments["extra"]["a"], np.arange(5))
        assert tok.sections["notes"] == {"policy": "none", "version": 1}
    finally:
        built.attachments.clear()
        built.sections.clear()


def test_build_input_errors(clustered):
    x = clustered[:300].copy()
    x[17, 3] = np.nan
    with pytest.raises(InputError, match="row 17 contains NaN"):
        SemanticTokenizer.build(x, codebook_sizes=[8])
    with pytest.raises(InputError, match="duplicate item id 'a'"):
        SemanticTokenizer.build(clustered[:3], ids=["a", "b", "a"], codebook_sizes=[2])
    with pytest.raises(InputError, match="expected a 2-D array"):
        SemanticTokenizer.build(clustered[0], codebook_sizes=[2])
    with pytest.raises(InputError, match="empty input"):
        SemanticTokenizer.build(np.zeros((0, 4), np.float32), codebook_sizes=[2])
    z = clustered[:50].copy()
    z[4] = 0
    with pytest.raises(InputError, match="row 4 is all zeros"):
        SemanticTokenizer.build(z, codebook_sizes=[4], normalize=True)


def test_sid_parse_errors():
    with pytest.raises(InputError, match="not of the form"):
        parse_sid_string("a_1 b_2")
    with pytest.raises(InputError, match="expected <b_N>"):
        parse_sid_string("<a_1><c_2>")


@pytest.mark.parametrize("ids,code,match", [([0, 1, 2, 2, 4, 5], 0, "more than one row"), ([5, 0, 3, 3, 1, 2], 0, "more than one row"),
                                            (list(range(6)), 2, r"code_1 = 2, outside \[0, 2\)"), (list(range(6)), -1, r"code_1 = -1")])
def test_duplicate_item_rows_are_refused_on_load(tmp_path, ids, code, match):
    """Sorted integer ids skip the hash count only when strictly increasing; a repeat is still
    caught; codes are range-checked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tokenizer_kit.io import sha256_file

    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    tok = SemanticTokenizer.build(x, ids=np.arange(6), codebook_sizes=[2, 2], seed=0)
    tok.save_pretrained(tmp_path / "t")
    sp = tmp_path / "t" / "sids.parquet"
    table = pq.read_table(sp)
    table = table.set_column(0, "item_id", pa.array(ids, pa.int64()))
    if code:
        c = table.column("code_1").to_numpy().copy()
        c[3] = code
        table = table.set_column(table.column_names.index("code_1"), "code_1", pa.array(c))
    pq.write_table(table, sp)
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    m["files"]["sids.parquet"] = {"sha256": sha256_file(sp), "size": sp.stat().st_size}
    (tmp_path / "t" / "manifest.json").write_text(json.dumps(seal(m)))
    with pytest.raises(ArtifactError, match=match):
        SemanticTokenizer.from_pretrained(tmp_path / "t")


def test_load_and_save_again_keeps_the_training_record(tmp_path):
    """build-codebook's default index and `index` load a tokenizer and save it again."""
    x = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    SemanticTokenizer.build(x, codebook_sizes=[4, 4], seed=0).save_pretrained(tmp_path / "a")
    before = json.loads((tmp_path / "a" / "manifest.json").read_text())["training"]
    assert before
    SemanticTokenizer.from_pretrained(tmp_path / "a").save_pretrained(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["training"] == before
