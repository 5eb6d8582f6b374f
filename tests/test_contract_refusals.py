"""What breaks the SID contract is refused, or cleaned by the next writer (issue 21, item 7).

The one-line refusals of bad files live in the bad-input corpus (tests/_bad_inputs.py: a
changed embedding on the default build's index, SID strings in another form, a prefix longer
than a SID, resealed tokenizers with an index version "abc", an integer codebook, duplicate
rows or a float fingerprint array, a table name used as a pipeline key, text timestamps).
Here: what does not fit that pattern (a run's leftovers, what is accepted, the cost).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tokenizer_kit.cli.app import app


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tokenizer from build-codebook with its defaults (indexed), its embeddings and ids."""
    from tokenizer_kit.io import make_clustered_embeddings

    d = tmp_path_factory.mktemp("tok")
    x = make_clustered_embeddings(360, 16, n_topics=8, n_sub=4, seed=3).astype(np.float32)
    np.save(d / "emb.npy", x[:300])
    (d / "emb.ids.txt").write_text("\n".join(f"i{k}" for k in range(300)) + "\n")
    np.save(d / "new.npy", x[300:])
    (d / "new.ids.txt").write_text("\n".join(f"n{k}" for k in range(60)) + "\n")
    r = CliRunner().invoke(app, ["build-codebook", str(d / "emb.npy"), "--ids", str(d / "emb.ids.txt"), "--out", str(d / "tok"),
                                 "--codebook-size", "8", "--levels", "3"])
    assert r.exit_code == 0, r.output
    return d


def test_default_build_records_fingerprints_so_update_refuses_a_changed_vector(built, tmp_path):
    import shutil

    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import SIDIndex, embedding_hash

    tok = tmp_path / "tok"
    shutil.copytree(built / "tok", tok)
    idx = SIDIndex.stored(SemanticTokenizer.from_pretrained(tok))
    x = np.load(built / "emb.npy")
    ids = (built / "emb.ids.txt").read_text().split()
    np.testing.assert_array_equal(idx.emb_hash[idx.rows_of(ids)], embedding_hash(x))  # every item, the index --embeddings value
    # one known item with another vector, among new ones: refused, nothing written
    x2 = np.concatenate([np.load(built / "new.npy"), x[7:8] + 0.25])
    np.save(tmp_path / "upd.npy", x2)
    (tmp_path / "upd.ids.txt").write_text("\n".join([f"n{k}" for k in range(60)] + ["i7"]) + "\n")
    before = _tree(tok)
    r = CliRunner().invoke(app, ["assign", str(tmp_path / "upd.npy"), "--ids", str(tmp_path / "upd.ids.txt"), "--tokenizer", str(tok), "--update"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert _errors(r.stderr) == [_errors(r.stderr)[0]] and "1 known items come with a different embedding (first 'i7')" in r.stderr
    assert _tree(tok) == before
    # the same vectors again: accepted as known, nothing to change
    r = CliRunner().invoke(app, ["assign", str(built / "emb.npy"), "--ids", str(built / "emb.ids.txt"), "--tokenizer", str(tok), "--update",
                                 "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["known"] == 300 and _tree(tok) == before


def test_next_writer_removes_stale_temporary_files(built, tmp_path):
    """What a kill -9 during `assign --update` leaves (atomic_write's temporaries) is removed
    by the next update, under the writer lock."""
    import shutil

    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import SIDIndex

    tok = tmp_path / "tok"
    shutil.copytree(built / "tok", tok)
    stale = [".manifest.json.k1ll3d0a.tmp", ".index-seg-000002.safetensors.abcd1234.tmp", ".README.md.zz_9yy88.tmp"]
    for name in stale:
        (tok / name).write_bytes(b"half a file")
    r = CliRunner().invoke(app, ["assign", str(built / "new.npy"), "--ids", str(built / "new.ids.txt"), "--tokenizer", str(tok), "--update"])
    assert r.exit_code == 0, r.output
    left = sorted(p.name for p in tok.iterdir() if p.name.endswith(".tmp"))
    assert left == []
    idx = SIDIndex.stored(SemanticTokenizer.from_pretrained(tok))
    assert len(idx) == 360 and idx.row_of("n0") >= 0


@pytest.mark.parametrize("spell", [lambda s: s, lambda s: f"  {s} ", lambda s: s.replace("><", "> <")],
                         ids=["as-written", "padded", "spaced-tokens"])
def test_lookup_accepts_the_documented_sid_form(built, spell):
    r = CliRunner().invoke(app, ["lookup", str(built / "tok"), "--item", "i3", "--format", "json"])
    sid = json.loads(r.stdout)["item"]["sid"]
    r = CliRunner().invoke(app, ["lookup", str(built / "tok"), "--sid", spell(sid), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sid"]["item_id"] == "i3"


def test_lookup_prefix_of_full_length_is_a_query_and_longer_is_an_error(built):
    r = CliRunner().invoke(app, ["lookup", str(built / "tok"), "--item", "i3", "--format", "json"])
    sid = json.loads(r.stdout)["item"]["sid"]
    ok = CliRunner().invoke(app, ["lookup", str(built / "tok"), "--prefix", sid, "--format", "json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["prefix"]["items"] == ["i3"]
    bad = CliRunner().invoke(app, ["lookup", str(built / "tok"), "--prefix", sid + "<e_0>"])
    assert bad.exit_code == 1 and len(_errors(bad.stderr)) == 1 and "has 5 tokens, but SIDs in this index have 4" in bad.stderr


def test_pipeline_failing_in_its_first_stage_leaves_nothing(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"item_id": ["a", "b"], "title": ["x", "y"]}), tmp_path / "cat.parquet")
    pq.write_table(pa.table({"user_id": ["u", "u"], "item_id": ["a", "b"], "timestamp": [0, 1]}), tmp_path / "inter.parquet")
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'workdir = "{tmp_path}/out"\n[data]\ncatalog = "{tmp_path}/cat.parquet"\ninteractions = "{tmp_path}/inter.parquet"\n'
                   '[extract]\ntext_fields = ["nope"]\n')
    before = _tree(tmp_path)
    r = CliRunner().invoke(app, ["pipeline", str(cfg)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert len(_errors(r.stderr)) == 1 and "no column(s) ['nope']" in r.stderr
    assert not (tmp_path / "out").exists() and _tree(tmp_path) == before  # no workdir, no empty stages/
    # a work directory the user made is kept, and gets no empty stages/ either
    (tmp_path / "out").mkdir()
    r = CliRunner().invoke(app, ["pipeline", str(cfg)])
    assert r.exit_code == 1 and list((tmp_path / "out").iterdir()) == []


def test_pipeline_refuses_a_table_used_as_a_key_and_unknown_switches():
    from tokenizer_kit.errors import UsageError
    from tokenizer_kit.pipeline import load_config

    data = {"catalog": __file__, "interactions": __file__}
    with pytest.raises(UsageError, match="baseline = true: 'baseline' is a table"):
        load_config({"baseline": True, "data": data})
    with pytest.raises(UsageError, match=r"\[baseline\] has unknown keys \['enable'\]"):
        load_config({"baseline": {"enable": False}, "data": data})
    assert load_config({"baseline": {"enabled": False}, "data": data}).baseline is False


def test_interaction_timestamps_accept_dates_and_integer_text():
    import pyarrow as pa

    from tokenizer_kit.errors import InputError
    from tokenizer_kit.io import interaction_log

    def log(ts):
        return interaction_log(pa.table({"user_id": ["u"] * 3, "item_id": ["a", "b", "c"], "timestamp": ts}))

    by_int = log(pa.array([3, 1, 2], pa.int64()))
    assert by_int.timestamps.tolist() == [1, 2, 3]
    assert log(pa.array(["3", "1", "2"])).items.tolist() == by_int.items.tolist()
    dates = pa.array(np.array(["2020-01-03", "2020-01-01", "2020-01-02"], dtype="datetime64[s]"))
    assert log(dates).items.tolist() == by_int.items.tolist()
    with pytest.raises(InputError, match=r"holds 1\.5 at row 1"):
        log(pa.array([1.0, 1.5, 2.0]))
    with pytest.raises(InputError, match="1 nulls"):
        log(pa.array([1, None, 2], pa.int64()))
