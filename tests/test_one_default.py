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
