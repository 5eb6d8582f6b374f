"""One default each (issue 21, item 4): one seed default for the CLI, Python and the pipeline;
the same indexed SIDs from build-codebook and SemanticTokenizer.build; an exported index
imported back unchanged; item ids that keep their type end to end."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner


def _cli(args):
    from tokenizer_kit.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _write(path, ids, x):
    pq.write_table(pa.table({"item_id": pa.array(list(ids)), "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])}),
                   path)


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    """600 Office MiniLM embeddings with their (string) ids, as Parquet."""
    from conftest import DATA

    d = tmp_path_factory.mktemp("one_default")
    x = np.load(DATA / "office_minilm_f16.npy").astype(np.float32)[:600]
    ids = (DATA / "office_minilm_f16.ids.txt").read_text().split()[:600]
    _write(d / "emb.parquet", ids, x)
    return d, ids, x


def test_one_seed_and_one_index_for_cli_python_and_pipeline(office, tmp_path):
    """build-codebook, SemanticTokenizer.build and the pipeline's codebook stage (a config
    without a seed) with their defaults: the same seed (the quantizer config's), the same
    indexed 4-token SIDs, the same sids.parquet."""
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import SIDIndex
    from tokenizer_kit.io import load_embeddings
    from tokenizer_kit.pipeline import load_config, stages
    from tokenizer_kit.quantizers import RQKMeansConfig

    d, ids, _ = office
    r = _cli(["build-codebook", d / "emb.parquet", "-o", tmp_path / "cli", "--codebook-size", "8", "--levels", "3", "--format", "json"])
    assert r.exit_code == 0, r.output
    py = SemanticTokenizer.build(load_embeddings(d / "emb.parquet"), codebook_sizes=[8, 8, 8])
    py.save_pretrained(tmp_path / "py")
    (tmp_path / "c.json").write_text("{}")
    cfg = load_config({"workdir": str(tmp_path / "w"), "data": {"catalog": str(tmp_path / "c.json"), "interactions": str(tmp_path / "c.json")},
                       "codebook": {"levels": 3, "codebook_size": 8}})
    assert cfg.seed is None and cfg.codebook.quantizer_config().seed == RQKMeansConfig().seed
    assert cfg.align.seed == 0  # the other stages keep their own defaults
    stages.build_codebook(d / "emb.parquet", tmp_path / "pipe", cfg.codebook)
    toks = {n: SemanticTokenizer.from_pretrained(tmp_path / n) for n in ("cli", "py", "pipe")}
    seeds = {n: t.quantizer.config.seed for n, t in toks.items()}
    assert seeds == {"cli": RQKMeansConfig().seed, "py": RQKMeansConfig().seed, "pipe": RQKMeansConfig().seed}
    tables = {n: pq.read_table(tmp_path / n / "sids.parquet") for n in toks}
    assert tables["cli"].equals(tables["py"]) and tables["cli"].equals(tables["pipe"])
    assert tables["cli"].column("item_id").to_pylist() == ids and tables["cli"].column("sid")[0].as_py().count("<") == 4
    idx = {n: SIDIndex.from_tokenizer(t) for n, t in toks.items()}
    assert {i.policy for i in idx.values()} == {"suffix"} and {i.version for i in idx.values()} == {1}
    assert np.array_equal(idx["cli"].emb_hash, idx["py"].emb_hash) and (idx["py"].emb_hash != 0).all()
    assert np.array_equal(py.sids, toks["cli"].sids) and int(py.sids[:, 3].max()) > 0  # collisions resolved, as the CLI
    # index=False is --no-index: codes only
    bare = SemanticTokenizer.build(load_embeddings(d / "emb.parquet"), codebook_sizes=[8, 8, 8], index=False)
    assert bare.sids.shape == (600, 3) and np.array_equal(bare.codes, py.codes)


def test_import_of_our_export_is_the_identity(office, tmp_path):
    """index --export-lcrec, then import-index --policy suffix: every item keeps its SID, no
    level is added (the export has no duplicate SIDs), and report shows the code levels only.
    A file whose SIDs collide still gets a suffix level of its own."""
    from tokenizer_kit.indexer import load_sids

    d, ids, _ = office
    assert _cli(["build-codebook", d / "emb.parquet", "-o", tmp_path / "tok", "--codebook-size", "8", "--levels", "3"]).exit_code == 0
    r = _cli(["index", tmp_path / "tok", "--export-lcrec", tmp_path / "t.index.json"])
    assert r.exit_code == 0, r.output
    r = _cli(["import-index", tmp_path / "t.index.json", "--policy", "suffix", "--out", tmp_path / "imp", "--format", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["duplicate_sids"] == 0 and res["index"]["sid_length"] == 4 and res["index"]["moved_items"] == 0
    a, b = load_sids(tmp_path / "tok"), load_sids(tmp_path / "imp")
    assert b["item_id"].tolist() == ids and b["sid"].tolist() == a["sid"].tolist()
    assert b["sid"].str.count("<").eq(4).all() and a["sid"].str.endswith("<d_0>").mean() < 1  # suffixes > 0 kept as they were
    r = _cli(["lookup", tmp_path / "imp", "--item", ids[7], "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["item"]["sid"] == a["sid"][7]
    r = _cli(["report", tmp_path / "imp", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "-0.0000" not in _cli(["report", tmp_path / "imp"]).output
    # colliding SIDs (the export without its suffix level): the policy adds one
    lc = json.loads((tmp_path / "t.index.json").read_text())
    (tmp_path / "c.index.json").write_text(json.dumps({k: v[:3] for k, v in lc.items()}))
    r = _cli(["import-index", tmp_path / "c.index.json", "--policy", "suffix", "--out", tmp_path / "imp2", "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["duplicate_sids"] > 0 and json.loads(r.stdout)["index"]["sid_length"] == 4


@pytest.mark.parametrize("verb", ["import-index", "report", "lookup"])
def test_a_code_beyond_any_codebook_is_refused(tmp_path, verb):
    (tmp_path / "bad.index.json").write_text(json.dumps({"1": ["<a_1>", "<b_2>"], "2": ["<a_100000000>", "<b_0>"]}))
    args = {"import-index": ["import-index", tmp_path / "bad.index.json", "--out", tmp_path / "imp"],
            "report": ["report", tmp_path / "bad.index.json"],
            "lookup": ["lookup", tmp_path / "bad.index.json", "--item", "1"]}[verb]
    r = _cli(args)
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert r.exit_code != 0 and len(lines) == 1, r.output
    assert "code 100000000 at level 0" in lines[0] and "at most 16777215" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.index.json"]  # nothing written


def test_ids_keep_their_type_and_a_mismatch_on_update_is_refused(office, tmp_path):
    """int64 ids: build-codebook -> assign --update -> load_sids stay int64 on both engines'
    side of the index; new items with string ids into that index: one line naming both types,
    the tokenizer directory unchanged."""
    from tokenizer_kit.indexer import load_sids

    _, _, x = office
    _write(tmp_path / "base.parquet", np.arange(500, dtype=np.int64), x[:500])
    _write(tmp_path / "new.parquet", np.arange(500, 550, dtype=np.int64), x[500:550])
    _write(tmp_path / "new_str.parquet", [str(i) for i in range(550, 600)], x[550:600])
    assert _cli(["build-codebook", tmp_path / "base.parquet", "-o", tmp_path / "tok", "--codebook-size", "8", "--levels", "3"]).exit_code == 0
    r = _cli(["assign", tmp_path / "new.parquet", "-t", tmp_path / "tok", "--update", "-o", tmp_path / "l.parquet", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["new"] == 50
    assert pq.read_table(tmp_path / "l.parquet").schema.field("item_id").type == pa.int64()
    s = load_sids(tmp_path / "tok")
    assert str(s["item_id"].dtype) == "int64" and s["item_id"].tolist() == list(range(550))
    before = {p.name: p.read_bytes() for p in (tmp_path / "tok").iterdir() if p.is_file()}
    r = _cli(["assign", tmp_path / "new_str.parquet", "-t", tmp_path / "tok", "--update"])
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert r.exit_code != 0 and len(lines) == 1, r.output
    assert "item ids are int64 but the new items' ids are string (first '550')" in lines[0] and "integer ids" in lines[0]
    assert {p.name: p.read_bytes() for p in (tmp_path / "tok").iterdir() if p.is_file()} == before
    assert str(load_sids(tmp_path / "tok")["item_id"].dtype) == "int64"
