"""Shared synthetic data for the alignment tests (small, seeded)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def random_log(seed: int, n_users: int = 40, n_items: int = 30, n: int = 400, labels: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols = {
        "user_id": rng.integers(0, n_users, n).astype(str),
        "item_id": rng.integers(0, n_items, n).astype(str),
        "timestamp": rng.integers(0, 1000, n),
    }
    if labels:
        cols["label"] = (rng.random(n) < 0.8).astype(np.int64)
    return pa.table(cols)


def clustered_store(path, *, n_items: int = 64, n_clusters: int = 8, dim: int = 16, seed: int = 0):
    """Items in clusters; tokens = cluster centre + item noise + token noise, 3-9 tokens each."""
    from tokenizer_kit.features import write_feature_store

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    cluster = np.arange(n_items) % n_clusters
    ids = [f"it{i:03d}" for i in range(n_items)]
    toks = []
    for i in range(n_items):
        t = int(rng.integers(3, 10))
        base = centres[cluster[i]] + 0.5 * rng.normal(size=dim)
        toks.append((base + 0.3 * rng.normal(size=(t, dim))).astype(np.float32))
    store = write_feature_store(path, ids, toks)
    return store, ids, cluster


def cluster_pairs(ids, cluster, *, n_pairs: int = 256, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    a, b = [], []
    while len(a) < n_pairs:
        i, j = rng.integers(0, len(ids), 2)
        if i != j and cluster[i] == cluster[j]:
            a.append(ids[i])
            b.append(ids[j])
    return pa.table({"item_a": a, "item_b": b, "score": np.ones(len(a)), "source": ["swing"] * len(a)})


def tiny_lm_dir(path):
    """A random-init tiny Llama causal LM + word-level tokenizer saved as an HF directory."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    words = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(40)] + ["stapler", "pen", "paper", "black", "blue", "office"]
    vocab = {w: i for i, w in enumerate(words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    cfg = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_captions(n_items: int, cluster) -> list[str]:
    names = ["stapler black", "pen blue", "paper office", "stapler blue", "pen black", "paper black", "office pen", "blue paper"]
    return [f"{names[int(cluster[i]) % len(names)]} w{i % 40}" for i in range(n_items)]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run ~20x faster on one thread on a busy 2-core box (no spin contention)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def cli_app():
    """A typer app with the alignment verbs (independent of the other verbs' modules)."""
    import typer

    from tokenizer_kit.cli import _align, _embed, _mine_pairs

    app = typer.Typer(pretty_exceptions_enable=False)
    for mod in (_mine_pairs, _align, _embed):
        mod.register(app)
    return app
