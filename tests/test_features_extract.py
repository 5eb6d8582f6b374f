"""Feature extraction: open_clip (tiny random-init config) and transformers (offline MiniLM)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenizer_kit.errors import ArtifactError, InputError
from tokenizer_kit.features import ExtractConfig, FeatureStore, embed_texts, extract_features

OFFICE = Path(__file__).resolve().parents[1] / "data" / "amazon-office" / "Office.item.json"

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
N_PATCH = (32 // 8) ** 2  # 16 patches + CLS per image


def _png(seed: int, size=(40, 30)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def clip_cfg(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("clip") / "tk-tiny-clip.json"
    p.write_text(json.dumps(TINY_CLIP))
    return str(p)


@pytest.fixture(scope="module")
def image_catalog(tmp_path_factory) -> Path:
    """6 items: covers as relative paths, frames as lists of bytes, gaps in every field."""
    d = tmp_path_factory.mktemp("cat")
    (d / "img").mkdir()
    for i in range(6):
        (d / "img" / f"c{i}.png").write_bytes(_png(i))
    (d / "img" / "bad.png").write_bytes(b"\x89PNG not really an image")
    covers = ["img/c0.png", "img/c1.png", None, "img/bad.png", "img/c4.png", "img/missing.png"]
    frames = [[_png(10), _png(11)], None, [_png(12)], [], [_png(13), _png(14), _png(15)], [_png(16)]]
    titles = ["red stapler", "blue pen", None, "paper clips", "desk lamp", "ink"]
    tags = ["office, desk", None, "pens", "metal", None, "black"]
    t = pa.table({
        "item_id": [f"i{k}" for k in range(6)],
        "title": titles,
        "tags": tags,
        "cover": covers,
        "frames": pa.array(frames, pa.list_(pa.binary())),
    })
    pq.write_table(t, d / "catalog.parquet")
    return d / "catalog.parquet"


def _clip_config(clip_cfg, **kw) -> ExtractConfig:
    base = dict(backend="open_clip", model=clip_cfg, random_init=True, text_fields=("title", "tags"),
                image_fields=("cover", "frames"), batch_size=2, shard_size=2)
    base.update(kw)
    return ExtractConfig(**base)


def _stores_equal(a: FeatureStore, b: FeatureStore) -> None:
    assert a.item_ids == b.item_ids
    assert a.segment_names == b.segment_names
    for i in range(len(a)):
        np.testing.assert_array_equal(a.tokens(i), b.tokens(i))
        np.testing.assert_array_equal(a.segments(i), b.segments(i))


def test_open_clip_shapes_segments_and_joint_space(tmp_path, image_catalog, clip_cfg):
    from tokenizer_kit.features._backends import build_backend

    cfg = _clip_config(clip_cfg)
    res = extract_features(image_catalog, tmp_path / "s", cfg)
    st = FeatureStore.open(tmp_path / "s")
    assert st.dim == 32 and st.segment_names == ["cover", "frames", "title", "tags"]
    assert res.random_init and st.manifest["random_init"] is True
    # 2 broken covers (corrupt, missing) are skipped and recorded; their items stay in the store
    assert res.n_image_errors == 2 and len(st) == 6
    bad = {(e["item_id"], e["field"]) for e in st.records()["errors"]}
    assert bad == {("i3", "cover"), ("i5", "cover")}
    n_images = {"i0": (1, 2), "i1": (1, 0), "i2": (0, 1), "i3": (0, 0), "i4": (1, 3), "i5": (0, 1)}
    for iid, (nc, nf) in n_images.items():
        seg = st.get(iid)[1]
        assert (seg == 0).sum() == nc * (1 + N_PATCH)
        assert (seg == 1).sum() == nf * (1 + N_PATCH)
        assert np.all(np.diff(seg) >= 0), "segments come in field order"
    assert (st.get("i2")[1] == 2).sum() == 0  # missing title -> no title tokens
    # CLS rows are the model's pooled image embedding; the <eot> text token is encode_text()
    import torch

    b = build_backend(cfg)
    from tokenizer_kit.features._images import load_image

    img = b.image_transform(load_image(str(image_catalog.parent / "img/c0.png")))
    want_img = b.model.encode_image(img[None]).detach().numpy()[0]
    tok, seg = st.get("i0")
    np.testing.assert_allclose(tok[0].astype(np.float32), want_img, rtol=2e-2, atol=2e-3)
    want_txt = b.model.encode_text(b.tokenizer(["red stapler"])).detach().numpy()[0]
    np.testing.assert_allclose(tok[seg == 2][-1].astype(np.float32), want_txt, rtol=2e-2, atol=2e-3)


def test_strict_fails_on_corrupt_image(tmp_path, image_catalog, clip_cfg):
    with pytest.raises(InputError, match="i3.*cover"):
        extract_features(image_catalog, tmp_path / "s", _clip_config(clip_cfg, strict=True))


def test_pool_and_token_cap_recorded(tmp_path, image_catalog, clip_cfg):
    cfg = _clip_config(clip_cfg, image_pool=2, max_tokens=12, shard_size=10, num_workers=2)
    extract_features(image_catalog, tmp_path / "s", cfg)
    st = FeatureStore.open(tmp_path / "s")
    assert st.manifest["token_budget"] == {"max_tokens_per_field": 64, "max_tokens": 12, "image_pool": 2}
    assert st.lengths().max() <= 12
    # pooled: CLS + 2x2 per image
    assert (st.get("i2")[1] == 1).sum() == 5


def test_interrupted_run_resumes_to_same_store(tmp_path, image_catalog, clip_cfg):
    cfg = _clip_config(clip_cfg)
    extract_features(image_catalog, tmp_path / "one", cfg)
    class Killer:
        """A progress reporter that dies inside the second shard."""

        def task(self, description, total=None, *, unit="item", completed=0):
            from tokenizer_kit._progress import NullProgress

            t = NullProgress().task(description, total, unit=unit, completed=completed)
            advance = t.advance

            def dying(n=1, **metrics):
                advance(n, **metrics)
                if t.completed > 3:
                    raise KeyboardInterrupt

            t.advance = dying
            return t

    with pytest.raises(KeyboardInterrupt):
        extract_features(image_catalog, tmp_path / "two", cfg, progress=Killer())
    m = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert m["shards"] == ["shard-00000"] and not m.get("complete")
    assert not list((tmp_path / "two").glob(".shard-*")), "no half-written shard left behind"
    res = extract_features(image_catalog, tmp_path / "two", cfg)
    assert res.rows_resumed == 2 and res.rows_this_run == 4
    _stores_equal(FeatureStore.open(tmp_path / "one"), FeatureStore.open(tmp_path / "two"))
    # the records of the resumed store match too
    assert FeatureStore.open(tmp_path / "two").records() == FeatureStore.open(tmp_path / "one").records()
    # another config never mixes into it
    with pytest.raises(ArtifactError, match="another config"):
        extract_features(image_catalog, tmp_path / "two", _clip_config(clip_cfg, max_tokens_per_field=8))


def test_config_reports_every_error_at_once():
    cfg = ExtractConfig(backend="open_clip", text_fields=("a",), image_fields=("a",), batch_size=0, layer=3)
    errs = cfg.all_errors()
    assert len(errs) == 4  # both text and image, no weights, --layer with open_clip, batch_size
    with pytest.raises(InputError, match="batch_size"):
        cfg.validate()
    assert ExtractConfig(text_fields=("title",)).all_errors() == []


@pytest.fixture(scope="module")
def office_small():
    from tokenizer_kit.io import read_catalog

    return read_catalog(OFFICE).slice(0, 12)


def test_minilm_office_tokens_match_sentence_embeddings(tmp_path, office_small):
    fields = ("title", "description", "brand", "categories")
    cfg = ExtractConfig(backend="hf", text_fields=fields, max_tokens_per_field=32, batch_size=5, shard_size=8)
    res = extract_features(office_small, tmp_path / "s", cfg)
    st = FeatureStore.open(tmp_path / "s")
    assert st.dim == 384 and res.n_items == len(st) == 12 and st.manifest["config"]["backend"] == "hf"
    rows = office_small.to_pylist()
    for i, rec in enumerate(rows):
        tok, seg = st.get(rec["item_id"])
        for s, f in enumerate(fields):
            n = int((seg == s).sum())
            assert (n > 0) == bool((rec.get(f) or "").strip())
            assert n <= 32
    # mean of an item's title token states == MiniLM's sentence embedding of that title
    titles = [r["title"] for r in rows[:4]]
    ref = embed_texts(titles, max_length=32)
    for i, r in enumerate(rows[:4]):
        tok, seg = st.get(r["item_id"])
        v = tok[seg == 0].astype(np.float32).mean(0)
        v /= np.linalg.norm(v)
        assert float(v @ ref[i]) > 0.999


def test_bf16_extraction_close_to_float32_and_recorded(tmp_path, office_small, monkeypatch):
    """``bf16`` autocasts MiniLM where the CPU has native bf16: token vectors within bf16
    precision of float32's; the store records it, so a resume with float32 is refused; on a
    CPU without native bf16 it computes float32 (the same store bit for bit)."""
    import torch

    import tokenizer_kit._torch_utils as tu

    fields = ("title", "brand")
    base = dict(backend="hf", text_fields=fields, max_tokens_per_field=16, batch_size=6)
    extract_features(office_small, tmp_path / "f32", ExtractConfig(**base))
    ref = FeatureStore.open(tmp_path / "f32")
    dtypes = []
    monkeypatch.setattr(tu, "cpu_has_native_bf16", lambda: True)
    from tokenizer_kit.features._backends import HFBackend

    real = HFBackend.encode_texts

    def spy(self, texts, max_tokens):
        dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)
        return real(self, texts, max_tokens)

    monkeypatch.setattr(HFBackend, "encode_texts", spy)
    extract_features(office_small, tmp_path / "b16", ExtractConfig(**base, bf16=True, cpu_threads=1))
    assert set(dtypes) == {torch.bfloat16}
    b16 = FeatureStore.open(tmp_path / "b16")
    assert b16.manifest["config"]["bf16"] is True and "bf16" not in ref.manifest["config"]
    for i in range(len(ref)):
        a, b = ref.tokens(i).astype(np.float32), b16.tokens(i).astype(np.float32)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert a.shape == b.shape and cos.min() > 0.999
    with pytest.raises(ArtifactError):  # another config: the store is not resumed with float32
        extract_features(office_small, tmp_path / "b16", ExtractConfig(**base))
    monkeypatch.setattr(tu, "cpu_has_native_bf16", lambda: False)
    dtypes.clear()
    extract_features(office_small, tmp_path / "emul", ExtractConfig(**base, bf16=True))
    assert set(dtypes) == {torch.float32}
    em = FeatureStore.open(tmp_path / "emul")
    for i in range(len(ref)):
        np.testing.assert_array_equal(em.tokens(i), ref.tokens(i))


def test_reader_round_trip_and_batches(tmp_path, office_small):
    cfg = ExtractConfig(backend="hf", text_fields=("title", "brand"), max_tokens_per_field=16, shard_size=5, layer=-2)
    extract_features(office_small, tmp_path / "s", cfg)
    st = FeatureStore.open(tmp_path / "s")
    assert len(st.manifest["shards"]) == 3 and st.manifest["config"]["layer"] == -2
    lens = st.lengths()
    seen = []
    for ids, x, mask, seg in st.iter_batches(4):
        assert x.shape[:2] == mask.shape == seg.shape and x.shape[2] == 384
        np.testing.assert_array_equal(mask.sum(1), [lens[st.index_of(i)] for i in ids])
        assert np.all(seg[~mask] == -1)
        for r, iid in enumerate(ids):
            tok, _ = st.get(iid)
            np.testing.assert_array_equal(x[r, : len(tok)], tok.astype(np.float32))
        seen += ids
    assert seen == st.item_ids == office_small.column("item_id").to_pylist()


def _cli():
    import typer

    from tokenizer_kit.cli import _extract

    app = typer.Typer()
    _extract.register(app)

    @app.callback()
    def _main():
        pass

    return app


def test_cli_extract_json_and_random_init_warning(tmp_path, image_catalog, clip_cfg):
    from typer.testing import CliRunner

    r = CliRunner().invoke(_cli(), ["extract", str(image_catalog), "--backend", "open_clip", "--model", clip_cfg,
                                    "--random-init", "--text-fields", "title,tags", "--image-fields", "cover,frames",
                                    "--num-workers", "0", "--out", str(tmp_path / "s"), "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["n_items"] == 6 and d["n_image_errors"] == 2 and d["random_init"] is True and d["dim"] == 32
    assert "RANDOM" in r.stderr
    # open_clip without weights: one-line error, exit 2 (settings that cannot run)
    r = CliRunner().invoke(_cli(), ["extract", str(image_catalog), "--backend", "open_clip", "--model", clip_cfg,
                                    "--out", str(tmp_path / "t")])
    assert r.exit_code == 2 and "--pretrained" in r.stderr and "Traceback" not in r.output
    # unknown column: one-line error naming it
    r = CliRunner().invoke(_cli(), ["extract", str(image_catalog), "--text-fields", "title,nope", "--out", str(tmp_path / "u")])
    assert r.exit_code == 1 and "nope" in r.stderr


@pytest.fixture(scope="module")
def tiny_hf_clip(tmp_path_factory) -> str:
    """A tiny random CLIPModel (dual tower) saved with MiniLM's tokenizer and a 32 px image processor."""
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    from tokenizer_kit.features import default_text_model_path

    d = tmp_path_factory.mktemp("hfclip")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64),
        vision_config=dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    AutoTokenizer.from_pretrained(default_text_model_path()).save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return str(d)


def test_hf_vision_language_encoder(tmp_path, image_catalog, tiny_hf_clip):
    import torch

    from tokenizer_kit.features._backends import build_backend
    from tokenizer_kit.features._images import load_image

    cfg = ExtractConfig(backend="hf", model=tiny_hf_clip, text_fields=("title",), image_fields=("cover",), batch_size=4)
    res = extract_features(image_catalog, tmp_path / "s", cfg)
    st = FeatureStore.open(tmp_path / "s")
    assert st.dim == 24 and res.n_image_errors == 2
    tok, seg = st.get("i0")
    assert (seg == 0).sum() == 1 + N_PATCH and (seg == 1).sum() > 0
    # i2 has no title and no cover: by default it keeps its row with the empty text's tokens (empty_items="embed")
    assert "i2" in st.item_ids and [r["item_id"] for r in st.records()["embedded_empty"]] == ["i2"] and st.records()["skipped"] == []
    assert res.n_empty_items == 1 and res.empty_item_ids == ["i2"]
    # the CLS row is CLIP's projected image embedding (joint space)
    b = build_backend(cfg)
    px = b.image_transform(load_image(str(image_catalog.parent / "img/c0.png")))[None]
    with torch.inference_mode():
        out = b.model.get_image_features(pixel_values=px)
    want = (out if torch.is_tensor(out) else out.pooler_output).numpy()[0]
    np.testing.assert_allclose(tok[0].astype(np.float32), want, rtol=2e-2, atol=2e-3)


def test_saved_hf_dataset_and_jsonl_catalogues(tmp_path, clip_cfg, image_catalog):
    import datasets

    feats = datasets.Features({
        "item_id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "cover": datasets.Image(),
        "frames": datasets.Sequence(datasets.Image()),
    })
    ds = datasets.Dataset.from_dict(
        {"item_id": ["a", "b"], "title": ["lamp", None],
         "cover": [{"bytes": _png(1), "path": None}, None],
         "frames": [[{"bytes": _png(2), "path": None}], [{"bytes": _png(3), "path": None}, {"bytes": _png(4), "path": None}]]},
        features=feats,
    )
    ds.save_to_disk(str(tmp_path / "hfds"))
    cfg = _clip_config(clip_cfg, text_fields=("title",))
    extract_features(tmp_path / "hfds", tmp_path / "s1", cfg)
    st = FeatureStore.open(tmp_path / "s1")
    assert [(st.get(i)[1] == 1).sum() for i in ("a", "b")] == [1 + N_PATCH, 2 * (1 + N_PATCH)]
    assert (st.get("b")[1] == 0).sum() == 0
    # JSONL: image paths relative to the catalogue's directory, frames as a JSON list in a string
    img_dir = image_catalog.parent / "img"
    lines = [{"item_id": "x", "title": "pen", "cover": str(img_dir / "c0.png"), "frames": json.dumps([str(img_dir / "c1.png")] * 3)}]
    (tmp_path / "cat.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    extract_features(tmp_path / "cat.jsonl", tmp_path / "s2", cfg)
    seg = FeatureStore.open(tmp_path / "s2").get("x")[1]
    assert [(seg == s).sum() for s in range(3)] == [1 + N_PATCH, 3 * (1 + N_PATCH), (seg == 2).sum()] and (seg == 2).sum() > 0


@pytest.mark.gpu
def test_open_clip_cuda_matches_cpu(tmp_path, image_catalog, clip_cfg):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    extract_features(image_catalog, tmp_path / "cpu", _clip_config(clip_cfg))
    extract_features(image_catalog, tmp_path / "gpu", _clip_config(clip_cfg, device="cuda"))
    a, b = FeatureStore.open(tmp_path / "cpu"), FeatureStore.open(tmp_path / "gpu")
    assert a.item_ids == b.item_ids
    for i in range(len(a)):
        np.testing.assert_array_equal(a.segments(i), b.segments(i))
        np.testing.assert_allclose(a.tokens(i).astype(np.float32), b.tokens(i).astype(np.float32), atol=2e-2)


def test_open_clip_local_checkpoint(tmp_path, image_catalog, clip_cfg):
    import open_clip
    import torch
    from safetensors.torch import save_file

    from tokenizer_kit.features._images import load_image

    open_clip.add_model_config(Path(clip_cfg))
    torch.manual_seed(123)
    model, _, pre = open_clip.create_model_and_transforms(Path(clip_cfg).stem)
    ckpt = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    cfg = _clip_config(clip_cfg, random_init=False, pretrained=str(ckpt), text_fields=("title",), image_fields=("cover",))
    res = extract_features(image_catalog, tmp_path / "s", cfg)
    st = FeatureStore.open(tmp_path / "s")
    assert not res.random_init and st.manifest["backend_info"]["weights"] == str(ckpt)
    with torch.inference_mode():
        want = model.eval().encode_image(pre(load_image(str(image_catalog.parent / "img/c1.png")))[None]).numpy()[0]
    np.testing.assert_allclose(st.get("i1")[0][0].astype(np.float32), want, rtol=2e-2, atol=2e-3)
