"""The library's long loops report through ``tokenizer_kit._progress`` (and draw nothing)."""

import numpy as np
import pytest

from _align_helpers import cluster_pairs, clustered_store, one_torch_thread  # noqa: F401
from tokenizer_kit._progress import NullProgress


class Recorder:
    """A ``Progress`` that keeps every task and every advance."""

    def __init__(self):
        self.tasks = []

    def task(self, description, total=None, *, unit="item", completed=0):
        t = NullProgress().task(description, total, unit=unit, completed=completed)
        t.steps = []
        t.closed = False
        advance, close = t.advance, t.close

        def record(n=1, **metrics):
            t.steps.append((n, metrics))
            advance(n, **metrics)

        def closing():
            t.closed = True
            close()

        t.advance, t.close = record, closing
        self.tasks.append(t)
        return t

    def one(self, description):
        found = [t for t in self.tasks if t.description == description]
        assert len(found) == 1, [t.description for t in self.tasks]
        t = found[0]
        assert t.closed, f"{description} was never closed"
        return t


def test_alignment_reports_each_step_with_its_loss(tmp_path):
    from tokenizer_kit.alignment import AlignConfig, QFormerConfig, train_alignment

    store, ids, cluster = clustered_store(tmp_path / "store")
    cfg = AlignConfig(qformer=QFormerConfig(feature_dim=16, d_model=16, n_queries=2, n_layers=1, n_heads=2),
                      steps=6, batch_size=16, warmup_steps=1, caption_weight=0.0, checkpoint_every=3)
    rec = Recorder()
    train_alignment(store=store, pairs=cluster_pairs(ids, cluster), out=tmp_path / "a", config=cfg, stop_after=4, progress=rec)
    t = rec.one("align")
    assert (t.total, t.unit, t.completed) == (6, "step", 4)
    assert all(n == 1 and np.isfinite(m["loss"]) for n, m in t.steps)
    rec = Recorder()
    train_alignment(store=store, pairs=cluster_pairs(ids, cluster), out=tmp_path / "a", config=cfg, progress=rec)  # resumes
    t = rec.one("align")
    assert len(t.steps) == 2 and t.completed == 6


def test_rq_vae_reports_each_epoch():
    from tokenizer_kit.quantizers._rq_vae import RQVAE

    x = np.random.default_rng(0).standard_normal((600, 8)).astype(np.float32)
    rec = Recorder()
    RQVAE(codebook_sizes=[8, 8], latent_dim=4, hidden_dims=[16], max_epochs=3, batch_size=128, cpu_threads=1).fit(x, progress=rec)
    t = rec.one("rq-vae")
    assert (t.total, t.unit, t.completed) == (3, "epoch", 3)
    assert all(set(m) == {"loss", "val_mse"} for _, m in t.steps)


def test_semantic_tokenizer_build_passes_progress_to_rq_vae():
    from tokenizer_kit import SemanticTokenizer

    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    rec = Recorder()
    SemanticTokenizer.build(x, method="rq-vae", codebook_sizes=[8, 8], latent_dim=4, hidden_dims=[16], max_epochs=2, progress=rec)
    assert rec.one("rq-vae").completed == 2
    SemanticTokenizer.build(x, method="rq-kmeans", codebook_sizes=[8, 8], progress=Recorder())  # fit takes none: fine


def test_companion_reports_training_steps_and_decoding():
    from tokenizer_kit.companion import GenerativeRetriever, RetrievalConfig, random_sid_index

    idx = random_sid_index([f"i{k}" for k in range(30)], [4, 4, 4], seed=0)
    rng = np.random.default_rng(0)
    hists = [rng.integers(0, 30, 5) for _ in range(50)]
    targets = rng.integers(0, 30, 50)
    r = GenerativeRetriever(idx, RetrievalConfig(d_model=16, d_ff=32, n_layers=1, n_heads=2, batch_size=16, epochs=2))
    rec = Recorder()
    r.fit(hists, targets, progress=rec)
    t = rec.one("retrieval train")
    assert t.total == t.completed == 2 * 4 and all("loss" in m for _, m in t.steps)
    r.generate_sids(hists[:20], progress=rec, description="decode test")
    assert rec.one("decode test").completed == 20


def test_nothing_is_drawn_without_a_reporter(capfd):
    from tokenizer_kit.quantizers._rq_vae import RQVAE

    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    RQVAE(codebook_sizes=[8, 8], latent_dim=4, hidden_dims=[16], max_epochs=2, cpu_threads=1).fit(x)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("legacy", [True, False])
def test_rq_vae_configs_saved_with_the_old_progress_flag_still_load(legacy):
    from tokenizer_kit.quantizers._rq_vae import RQVAEConfig

    cfg = RQVAEConfig.from_dict({"codebook_sizes": [4], "progress": legacy})
    assert not hasattr(cfg, "progress")


def test_rq_kmeans_reports_levels_with_the_residual():
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.io import make_clustered_embeddings

    rec = Recorder()
    SemanticTokenizer.build(make_clustered_embeddings(400, 8, seed=0), method="rq-kmeans", codebook_sizes=[8, 8, 8], progress=rec)
    t = rec.one("k-means levels")
    assert (t.total, t.unit, t.completed) == (3, "level", 3)
    mse = [m["residual_mse"] for _, m in t.steps]
    assert mse[0] > mse[1] > mse[2] > 0  # each level explains part of the residual


def test_cold_start_reports_encode_and_nearest_items():
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import SIDIndex
    from tokenizer_kit.io import make_clustered_embeddings

    x = make_clustered_embeddings(500, 8, seed=1)
    tok = SemanticTokenizer.build(x[:400], ids=[f"i{k}" for k in range(400)], codebook_sizes=[8, 8])
    idx = SIDIndex.for_tokenizer(tok)
    rec = Recorder()
    _, table, summary = idx.assign(tok, [f"n{k}" for k in range(100)], x[400:], progress=rec)
    # one task: the per-batch lookup (encode, then the nearest indexed items) over the input's blocks
    t = rec.one("encode and nearest items")
    assert t.completed == 100 and t.total == 100 and summary["new"] == 100
    # the blocked encode gives the codes of one call
    np.testing.assert_array_equal([r["codes"][:2] for r in table], tok.encode(x[400:]))


def test_pipeline_reports_its_stages(tmp_path):
    from conftest import ROOT
    from tokenizer_kit.pipeline._run import _Chain
    from tokenizer_kit.pipeline._config import load_config

    cfg = load_config(ROOT / "configs" / "office.toml")  # the demo's config on the bundled data, from any cwd
    chain = _Chain(cfg, None, None)
    variants = 2 if cfg.baseline else 1
    want = 4 + (variants - 1) + 2 * variants + 1 + ((variants if cfg.retrieval_baseline else 1) if cfg.run_retrieval else 0)
    assert chain.n_stages() == want
