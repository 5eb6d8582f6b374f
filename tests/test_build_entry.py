"""``tokenizer_kit.build.build(source, config)``: one entry point, the route picked by the method
and the source. Vectors in memory, a path and a stream give the same SIDs; a method that trains
on the whole input loads a path into memory and refuses a stream with one line."""

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.build import build
from tokenizer_kit.errors import InputError
from tokenizer_kit.io import load_embeddings, make_clustered_embeddings, open_embeddings
from tokenizer_kit.io._fingerprint import embedding_hash
from tokenizer_kit.quantizers import RQKMeansConfig, RQVAEConfig

# a sample cap (16 codes x 64 points) below n, so the streaming route samples
KMEANS = RQKMeansConfig(codebook_sizes=[16, 16], seed=0, max_points_per_centroid=64)
VAE = RQVAEConfig(codebook_sizes=[8, 8], latent_dim=8, hidden_dims=[16], max_epochs=2, batch_size=256, device="cpu",
                  kmeans_init_samples=512, seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """1,500 items x 12 with string ids, as an .npy (+ ids file) and as a Parquet file."""
    d = tmp_path_factory.mktemp("build_entry")
    x = make_clustered_embeddings(1500, 12, n_topics=8, n_sub=4, seed=2)
    ids = np.array([f"it{i}" for i in range(len(x))], dtype=object)
    np.save(d / "x.npy", x)
    (d / "x.ids.txt").write_text("\n".join(ids))
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    pq.write_table(pa.table({"item_id": pa.array(ids.tolist()), "embedding": emb}), d / "x.parquet", row_group_size=400)
    return d, ids, x


@pytest.mark.parametrize("balanced", [False, True], ids=["plain", "balanced"])
def test_in_memory_and_streamed_sources_give_the_same_sids(data, tmp_path, balanced):
    d, ids, x = data
    cfg = dataclasses.replace(KMEANS, balanced=balanced)
    cats = {f"it{i}": f"c{i % 3}" for i in range(len(x))}
    mem = build(x, cfg, ids=ids, categories=cats, fingerprints=True)  # in memory: nothing written
    assert mem.path is None and mem.codes.shape == (len(x), 2)
    sources = {"npy": d / "x.npy", "parquet": d / "x.parquet", "stream": open_embeddings(d / "x.parquet"),
               "embeddings": load_embeddings(d / "x.npy")}
    for name, src in sources.items():
        built = build(src, cfg, out=tmp_path / name, categories=cats, fingerprints=True)
        assert (built.codes is None) == (name != "embeddings"), name  # streamed: the SIDs stay on disk
        back = SemanticTokenizer.from_pretrained(tmp_path / name)
        np.testing.assert_array_equal(back.codes, mem.codes, err_msg=name)
        assert back.item_ids.tolist() == ids.tolist(), name
        np.testing.assert_array_equal(built.emb_hash, mem.emb_hash, err_msg=name)
        assert built.metrics["category_nmi"] == pytest.approx(mem.metrics["category_nmi"], abs=1e-12), name
    np.testing.assert_array_equal(mem.emb_hash, embedding_hash(x))


def test_the_typed_config_is_the_keyword_settings(data):
    _, ids, x = data
    by_config = SemanticTokenizer.build(x, ids=ids, config=KMEANS, index=False)
    by_keywords = SemanticTokenizer.build(x, ids=ids, method="rq-kmeans", codebook_sizes=[16, 16], seed=0, max_points_per_centroid=64,
                                          index=False)
    np.testing.assert_array_equal(by_config.codes, by_keywords.codes)
    assert by_config.quantizer.config == KMEANS
    over = SemanticTokenizer.build(x, ids=ids, config=KMEANS, seed=1, index=False)  # a keyword setting over the config
    assert over.quantizer.config.seed == 1 and over.quantizer.config.codebook_sizes == [16, 16]
    with pytest.raises(InputError, match="method 'rq-vae' does not match the config given"):
        SemanticTokenizer.build(x, method="rq-vae", config=KMEANS)


def test_a_method_that_trains_in_memory_loads_a_path(data, tmp_path):
    d, ids, x = data
    from_path = build(d / "x.npy", VAE, out=tmp_path / "vae", fingerprints=True)
    assert from_path.quantizer.method == "rq-vae" and from_path.item_ids.tolist() == ids.tolist()
    back = SemanticTokenizer.from_pretrained(tmp_path / "vae")
    np.testing.assert_array_equal(back.codes, from_path.codes)
    np.testing.assert_array_equal(from_path.emb_hash, embedding_hash(x))
    in_memory = build(x, VAE, ids=ids)
    np.testing.assert_array_equal(in_memory.codes, from_path.codes)


def test_a_method_that_trains_in_memory_refuses_a_stream(data, tmp_path):
    d, _, _ = data
    with pytest.raises(InputError) as e:
        build(open_embeddings(d / "x.parquet"), VAE, out=tmp_path / "vae")
    msg = str(e.value)
    assert "\n" not in msg and "'rq-vae' trains on the whole input in memory" in msg and "pass the path" in msg
    assert not (tmp_path / "vae").exists()


def test_wrong_arguments_are_refused_before_any_work(data, tmp_path):
    d, ids, x = data
    with pytest.raises(InputError, match="pass `out`"):
        build(d / "x.npy", KMEANS)
    with pytest.raises(InputError, match="not the config of a quantizer method"):
        build(x, {"codebook_sizes": [16, 16]})
    with pytest.raises(InputError, match="`ids` goes with vectors in memory"):
        build(d / "x.npy", KMEANS, out=tmp_path / "t", ids=ids)
    with pytest.raises(InputError, match="say how to read a path"):
        build(x, KMEANS, ids_path=d / "x.ids.txt")
    assert not (tmp_path / "t").exists()


def test_build_codebook_indexes_both_routes_with_each_items_fingerprint(data, tmp_path):
    """The stage behind build-codebook and the pipeline calls build(); the default index it adds
    records each item's embedding fingerprint by item, on either route."""
    from tokenizer_kit.indexer import SIDIndex
    from tokenizer_kit.pipeline import stages
    from tokenizer_kit.pipeline._stage_configs import CodebookConfig

    d, ids, x = data
    perm = np.random.default_rng(0).permutation(len(x))  # ids out of order: fingerprints must follow the items
    np.save(tmp_path / "p.npy", x[perm])
    (tmp_path / "p.ids.txt").write_text("\n".join(ids[perm]))
    for method, q in [("rq-kmeans", {"seed": 0, "max_points_per_centroid": 64}), ("rq-vae", {k: v for k, v in dataclasses.asdict(VAE).items() if k != "codebook_sizes"})]:
        cfg = CodebookConfig(method=method, levels=2, codebook_sizes=[8], quantizer=q)
        report = stages.build_codebook(tmp_path / "p.npy", tmp_path / method, cfg)
        assert report["method"] == method and report["index"]["policy"] == "suffix"
        tok = SemanticTokenizer.from_pretrained(tmp_path / method)
        idx = SIDIndex.from_tokenizer(tok)
        np.testing.assert_array_equal(idx.emb_hash[idx.rows_of(ids)], embedding_hash(x), err_msg=method)
