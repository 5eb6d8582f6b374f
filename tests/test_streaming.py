"""The streaming path (issue 14): readers in bounded batches, a build whose SIDs equal the
in-memory build's, metrics in bounded memory, the encode kernels, and the dtype / id rules."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.build._metrics import tokenizer_metrics
from tokenizer_kit.build._stream_metrics import StreamingMetrics
from tokenizer_kit.build._streaming import StreamingRun, assign_streaming, build_streaming, encode_batch
from tokenizer_kit.errors import ArtifactError, InputError
from tokenizer_kit.io import EmbeddingSource, EmbeddingStream, load_embeddings, make_clustered_embeddings, open_embeddings
from tokenizer_kit.quantizers import RQKMeans, RQKMeansConfig
from tokenizer_kit.quantizers._encode import BLOCK_ROWS, TorchEncoder, greedy_encode

# the sample cap (16 codes x 64 points = 1,024) is far below n: sampling is exercised
CFG = dict(codebook_sizes=[16, 16, 16], seed=0, max_points_per_centroid=64)
ONE_BLOCK = StreamingRun(batch_size=BLOCK_ROWS)


@pytest.fixture(scope="module")
def data():
    x = make_clustered_embeddings(9000, 24, n_topics=16, n_sub=8, seed=5)
    ids = np.array([f"item{i}" for i in range(len(x))], dtype=object)
    return ids, x


@pytest.fixture
def one_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _write_parquet_dir(path, ids, x, parts=3):
    path.mkdir()
    bounds = np.linspace(0, len(x), parts + 1).astype(int)
    for p in range(parts):
        a, b = bounds[p], bounds[p + 1]
        t = pa.table({"item_id": pa.array(ids[a:b].tolist()), "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x[a:b].reshape(-1)), x.shape[1])})
        pq.write_table(t, path / f"part-{p:03d}.parquet", row_group_size=1000)
    return path


class CountingStream(EmbeddingStream):
    """Wraps a stream and records the largest batch it yields; refuses to materialise."""

    def __init__(self, inner):
        self.inner, self.max_rows, self.batches_read = inner, 0, 0
        self.n, self.dim, self.source, self.has_ids = inner.n, inner.dim, inner.source, inner.has_ids

    def batches(self, batch_size=65536, **kw):
        for b in self.inner.batches(batch_size, **kw):
            rows = len(b.ids) if b.vectors is None else len(b.vectors)
            self.max_rows = max(self.max_rows, rows)
            self.batches_read += 1
            yield b

    def take(self, rows, batch_size=65536):
        return self.inner.take(rows, batch_size)

    def read_all(self):  # pragma: no cover - the streaming build must never call it
        raise AssertionError("the streaming path materialised the whole input")


@pytest.mark.parametrize("kw", [{}, {"balanced": True}, {"normalize": True}], ids=["plain", "balanced", "normalize"])
def test_streaming_build_equals_in_memory(data, tmp_path, kw):
    ids, x = data
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.ids.txt").write_text("\n".join(ids))
    kw = dict(kw)
    normalize = kw.pop("normalize", False)
    mem = SemanticTokenizer.build(x, ids=ids, normalize=normalize, index=False, **CFG, **kw)  # codes only, as build_streaming
    src = CountingStream(open_embeddings(tmp_path / "x.npy"))
    st = build_streaming(src, tmp_path / "tok", RQKMeansConfig(**CFG, **kw), normalize=normalize, run=ONE_BLOCK)
    assert src.max_rows <= BLOCK_ROWS and src.batches_read >= 3
    back = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    np.testing.assert_array_equal(back.codes, mem.codes)
    assert back.item_ids.tolist() == ids.tolist()
    assert back.sid_strings()[:3] == mem.sid_strings()[:3]
    for key in ("collision_rate", "unique_sids", "largest_bucket", "colliding_items", "levels", "prefix_fanout", "n_items"):
        assert st.metrics[key] == mem.metrics[key], key
    assert st.metrics["reconstruction_mse"] == pytest.approx(mem.metrics["reconstruction_mse"], rel=1e-6)
    assert SemanticTokenizer.read_manifest(tmp_path / "tok")["n_items"] == len(x)
    if kw.get("balanced"):
        assert st.quantizer.summary()["distinct_last_level_moved"] > 0


def test_streaming_sources_agree(data, tmp_path):
    """npy, a Parquet directory, a list of Parquet file URIs and a saved HF dataset: same SIDs."""
    import datasets

    ids, x = data
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.ids.txt").write_text("\n".join(ids))
    pdir = _write_parquet_dir(tmp_path / "pq", ids, x)
    uris = [f"file://{p}" for p in sorted(pdir.glob("*.parquet"))]
    ds = datasets.Dataset.from_dict({"item_id": ids.tolist(), "embedding": x.tolist()})
    ds.save_to_disk(str(tmp_path / "hf"))
    ref = None
    for name, src in [("npy", tmp_path / "x.npy"), ("parquet", pdir), ("uris", uris), ("hf", tmp_path / "hf")]:
        s = open_embeddings(src)
        assert (s.n, s.dim) == x.shape, name
        build_streaming(s, tmp_path / f"tok_{name}", RQKMeansConfig(**CFG), run=ONE_BLOCK)
        tok = SemanticTokenizer.from_pretrained(tmp_path / f"tok_{name}")
        assert tok.item_ids.tolist() == ids.tolist(), name
        if ref is None:
            ref = tok.codes
        np.testing.assert_array_equal(tok.codes, ref, err_msg=name)


def test_batches_are_bounded_and_take_reads_the_rows(data, tmp_path):
    ids, x = data
    pdir = _write_parquet_dir(tmp_path / "pq", ids, x)
    s = open_embeddings(pdir)
    sizes = [len(b.vectors) for b in s.batches(700)]
    assert max(sizes) <= 700 and sum(sizes) == len(x)
    rows = np.array([0, 5, 2999, 3000, 8999])
    np.testing.assert_array_equal(s.take(rows, batch_size=512), x[rows])
    np.save(tmp_path / "x.npy", x)
    np.testing.assert_array_equal(open_embeddings(tmp_path / "x.npy", row_ids=True).take(rows), x[rows])


def test_streaming_metrics_spill_to_disk_and_agree(data, tmp_path):
    ids, x = data
    tok = SemanticTokenizer.build(x, **CFG)
    ref = tokenizer_metrics(tok.codes, tok.codebook_sizes, x=x, x_hat=tok.decode(tok.codes))
    m = StreamingMetrics(tok.codebook_sizes, key_budget=500, spill_dir=tmp_path / "spill")
    for s in range(0, len(x), 1000):
        m.add_codes(tok.codes[s : s + 1000])
        m.add_reconstruction(x[s : s + 1000], tok.decode(tok.codes[s : s + 1000]))
    assert m.keys.spilled
    got = m.result()
    m.close()
    for key in ("collision_rate", "unique_sids", "largest_bucket", "colliding_items", "excess_items", "levels", "prefix_fanout"):
        assert got[key] == ref[key], key
    assert got["reconstruction_relative"] == pytest.approx(ref["reconstruction_relative"], rel=1e-9)
    assert not any((tmp_path / "spill").iterdir())


def test_streaming_category_nmi_matches_sklearn(data, tmp_path):
    ids, x = data
    rng = np.random.default_rng(0)
    cats = {i: (None if rng.random() < 0.1 else f"c{rng.integers(5)}") for i in ids.tolist()}
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.ids.txt").write_text("\n".join(ids))
    st = build_streaming(tmp_path / "x.npy", tmp_path / "tok", RQKMeansConfig(**CFG), categories=cats)
    mem = SemanticTokenizer.build(x, ids=ids, categories=[cats[i] for i in ids.tolist()], **CFG)
    assert st.metrics["category_nmi"] == pytest.approx(mem.metrics["category_nmi"], rel=1e-9)
    assert st.metrics["category_items"] == mem.metrics["category_items"]


def test_distinct_last_level_over_several_scratch_partitions(data, tmp_path, monkeypatch):
    """A tiny scratch budget forces many partitions; codes still equal the in-memory build."""
    from tokenizer_kit.build import _streaming

    ids, x = data
    real = _streaming._distinct_streaming
    monkeypatch.setattr(_streaming, "_distinct_streaming", lambda *a, **k: real(*a, **{**k, "budget_bytes": 20_000}))
    np.save(tmp_path / "x.npy", x)
    build_streaming(EmbeddingSource(tmp_path / "x.npy", row_ids=True), tmp_path / "tok", RQKMeansConfig(balanced=True, **CFG))
    mem = SemanticTokenizer.build(x, balanced=True, **CFG)
    np.testing.assert_array_equal(SemanticTokenizer.from_pretrained(tmp_path / "tok").codes, mem.codes)
    assert not list(tmp_path.glob(".*scratch"))


def test_office_streaming_build_keeps_golden_sids(office_emb, tmp_path):
    """The Office build through the streaming path gives the pinned golden SIDs."""
    from tests.test_golden_sids import GOLDEN_BUILD, _h

    ids, x = office_emb
    np.save(tmp_path / "office.npy", x)
    (tmp_path / "office.ids.txt").write_text("\n".join(ids))
    for name in ("plain", "balanced"):
        _, kw, want = GOLDEN_BUILD[name]
        build_streaming(tmp_path / "office.npy", tmp_path / name, RQKMeansConfig(codebook_sizes=[256] * 3, **kw))
        assert _h(SemanticTokenizer.from_pretrained(tmp_path / name).codes) == want, name


def test_assign_streaming_equals_encode(data, tmp_path):
    ids, x = data
    tok = SemanticTokenizer.build(x[:5000], ids=ids[:5000], **CFG)
    pdir = _write_parquet_dir(tmp_path / "pq", ids, x)
    res = assign_streaming(tok, pdir, tmp_path / "a.parquet", run=ONE_BLOCK)
    t = pq.read_table(tmp_path / "a.parquet")
    codes = np.stack([t.column(f"code_{l}").to_numpy() for l in range(3)], 1)
    np.testing.assert_array_equal(codes, tok.encode(x))
    np.testing.assert_array_equal(encode_batch(tok, x[:100]), tok.encode(x[:100]))
    assert t.column("item_id").to_pylist() == ids.tolist()
    assert t.column("sid").to_pylist()[:2] == tok.sid_strings(codes[:2])
    assert res["n_items"] == len(x) and res["already_indexed_items"] == 5000
    keys = {tuple(r) for r in tok.codes.tolist()}
    assert res["sids_shared_with_index"] == sum(tuple(r) in keys for r in codes.tolist())


def test_duplicate_ids_fail_and_write_nothing(data, tmp_path):
    ids, x = data
    dup = ids.copy()
    dup[7000] = dup[12]
    pdir = _write_parquet_dir(tmp_path / "pq", dup, x)
    with pytest.raises(InputError, match="duplicate item id 'item12' \\(2 times, first at row 12\\)"):
        build_streaming(pdir, tmp_path / "tok", RQKMeansConfig(**CFG))
    assert not (tmp_path / "tok").exists()
    # nothing left behind but the writer's lock file (no staging, no scratch)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["pq"]


def test_existing_output_refused_before_any_work(data, tmp_path):
    ids, x = data
    (tmp_path / "tok").mkdir()
    with pytest.raises(ArtifactError, match="already exists"):
        build_streaming(tmp_path / "missing.npy", tmp_path / "tok", RQKMeansConfig(**CFG))


# ---- dtype and id rules (issue 13, deliverable 1) ---------------------------------------------
def test_half_double_and_bfloat16_are_upcast(tmp_path):
    x = make_clustered_embeddings(300, 8, seed=1)
    for dt in (np.float16, np.float64):
        np.save(tmp_path / "h.npy", x.astype(dt))
        e = load_embeddings(tmp_path / "h.npy", row_ids=True)
        assert e.vectors.dtype == np.float32
        np.testing.assert_array_equal(e.vectors, x.astype(dt).astype(np.float32))
    # bfloat16 as numpy saves it without ml_dtypes: 2-byte void records (the high half of fp32)
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)
    np.save(tmp_path / "b.npy", bits.view("V2"))
    e = load_embeddings(tmp_path / "b.npy", row_ids=True)
    want = (bits.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(e.vectors, want)
    assert np.abs(e.vectors - x).max() < 1e-2


def test_torch_bfloat16_tensor_builds_like_its_float32_upcast():
    import torch

    x = make_clustered_embeddings(600, 8, seed=2)
    xb = torch.from_numpy(x).to(torch.bfloat16)
    a = SemanticTokenizer.build(xb, codebook_sizes=[4, 4], seed=0)
    b = SemanticTokenizer.build(xb.float().numpy(), codebook_sizes=[4, 4], seed=0)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.encode(xb[:50]), b.codes[:50])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: np.save(p / "e.npy", np.ones((4, 3), np.int64)), "integer dtype int64"),
        (lambda p: np.save(p / "e.npy", np.ones((4, 3), bool)), "boolean dtype"),
        (
            lambda p: pq.write_table(pa.table({"item_id": [1, 2], "embedding": pa.array([[1, 2], [3, 4]], pa.list_(pa.int32()))}), p / "e.parquet"),
            "integer dtype int32",
        ),
        (
            lambda p: pq.write_table(pa.table({"item_id": [1, 2], "embedding": pa.array([["a"], ["b"]])}), p / "e.parquet"),
            "object dtype|string dtype",
        ),
        (
            lambda p: pq.write_table(pa.table({"item_id": pa.array([1, None, 3]), "embedding": pa.array([[1.0], [2.0], [3.0]])}), p / "e.parquet"),
            "item id .*is null at row 1",
        ),
        (
            lambda p: pq.write_table(pa.table({"item_id": pa.array([1.0, 2.0]), "embedding": pa.array([[1.0], [2.0]])}), p / "e.parquet"),
            "item ids are floating-point",
        ),
        (
            lambda p: (np.save(p / "e.npy", np.ones((2, 2), np.float32)), (p / "e.ids.json").write_text('["a", null]')),
            "item id at row 1 is null",
        ),
    ],
    ids=["int-npy", "bool-npy", "int-parquet", "str-parquet", "null-id", "float-id", "null-json-id"],
)
def test_bad_dtypes_and_ids_are_one_line_errors(tmp_path, make, match):
    make(tmp_path)
    path = next(p for p in tmp_path.iterdir() if p.suffix in (".npy", ".parquet") and ".ids" not in p.name)
    with pytest.raises(InputError, match=match) as e:
        load_embeddings(path)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match=match):
        s = open_embeddings(path)
        for _ in s.batches():
            pass


def test_in_memory_build_refuses_integer_and_null_ids():
    with pytest.raises(InputError, match="integer dtype"):
        SemanticTokenizer.build(np.ones((300, 4), np.int32), codebook_sizes=[4])
    x = make_clustered_embeddings(300, 4, seed=0)
    with pytest.raises(InputError, match="null"):
        SemanticTokenizer.build(x, ids=[None] + list(range(299)), codebook_sizes=[4])


# ---- encode kernels -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quant(data):
    ids, x = data
    return RQKMeans(codebook_sizes=[32, 32, 32], seed=0).fit(x), x


def test_encode_does_not_depend_on_threads_or_batch(quant):
    q, x = quant
    ref = q.encode(x, threads=1)
    np.testing.assert_array_equal(q.encode(x, threads=2), ref)
    np.testing.assert_array_equal(q.encode(x, batch_size=3 * BLOCK_ROWS), ref)
    np.testing.assert_array_equal(greedy_encode(x, q._tables, block=BLOCK_ROWS, threads=2), ref)
    # a slice starting on a block boundary gives the same codes as the whole
    np.testing.assert_array_equal(q.encode(x[BLOCK_ROWS:]), ref[BLOCK_ROWS:])


def test_torch_encoder_on_cpu_equals_numpy_codes(quant):
    """The CUDA path's logic (GEMM + argmin per level, batches round-robin over devices), run
    on the CPU device twice over: codes equal the numpy codes up to near-ties."""
    q, x = quant
    enc = q.torch_encoder(devices=["cpu", "cpu"])
    got = enc.encode(x, batch_size=1000)
    assert got.shape == (len(x), 3) and got.dtype == np.int64
    np.testing.assert_array_equal(got, q.encode(x))


def test_torch_encoder_balanced_prices(data):
    ids, x = data
    q = RQKMeans(codebook_sizes=[16, 16], seed=0, balanced=True, max_points_per_centroid=64).fit(x)
    got = TorchEncoder(q._tables, ["cpu"]).encode(x)
    np.testing.assert_array_equal(got, q.encode(x))


@pytest.mark.gpu
def test_cuda_encode_equals_cpu_codes(quant):
    q, x = quant
    got = q.encode(x, device="cuda")
    np.testing.assert_array_equal(got, q.encode(x, device="cpu"))


@pytest.mark.gpu
def test_cuda_streaming_build_uses_gpu_and_matches_cpu(data, tmp_path):
    ids, x = data
    np.save(tmp_path / "x.npy", x)
    build_streaming(tmp_path / "x.npy", tmp_path / "gpu", RQKMeansConfig(device="cuda", **CFG))
    build_streaming(tmp_path / "x.npy", tmp_path / "cpu", RQKMeansConfig(device="cpu", **CFG))
    a = SemanticTokenizer.from_pretrained(tmp_path / "gpu")
    b = SemanticTokenizer.from_pretrained(tmp_path / "cpu")
    # k-means' GEMMs on the GPU, near-ties re-decided on the host: the same SIDs
    np.testing.assert_array_equal(a.codes, b.codes)
    assert a.metrics["reconstruction_mse"] == pytest.approx(b.metrics["reconstruction_mse"], rel=1e-9)
    assert a.quantizer.summary()["device"] == "cuda"



def test_large_groups_use_the_capacity_greedy_in_both_paths(data, tmp_path, monkeypatch):
    """Groups too large for the Hungarian method get the greedy under the same capacities;
    streaming and in-memory builds still agree, and no code exceeds ceil(m / K) items."""
    from tokenizer_kit.quantizers import _rq_kmeans

    monkeypatch.setattr(_rq_kmeans, "EXACT_ASSIGNMENT_CELLS", 64)
    ids, x = data
    np.save(tmp_path / "x.npy", x)
    cfg = dict(codebook_sizes=[4, 8], seed=0, max_points_per_centroid=64, balanced=True)
    build_streaming(EmbeddingSource(tmp_path / "x.npy", row_ids=True), tmp_path / "tok", RQKMeansConfig(**cfg))
    mem = SemanticTokenizer.build(x, **cfg)
    codes = SemanticTokenizer.from_pretrained(tmp_path / "tok").codes
    np.testing.assert_array_equal(codes, mem.codes)
    for c0 in range(4):
        grp = codes[codes[:, 0] == c0, 1]
        assert np.bincount(grp, minlength=8).max() <= -(-len(grp) // 8)


def test_capacity_greedy_gives_distinct_codes_when_they_fit():
    from tokenizer_kit.quantizers._rq_kmeans import _greedy_capacity_assignment

    rng = np.random.default_rng(0)
    cost = rng.random((10, 16))
    out = _greedy_capacity_assignment(cost, 1)
    assert len(set(out.tolist())) == 10
    out = _greedy_capacity_assignment(rng.random((50, 16)), 4)
    assert np.bincount(out, minlength=16).max() <= 4


def test_stale_scratch_of_a_killed_build_is_removed(data, tmp_path):
    ids, x = data
    np.save(tmp_path / "x.npy", x[:2000])
    stale = tmp_path / ".tok.abcd1234.scratch"
    stale.mkdir()
    (stale / "res-0.bin").write_bytes(b"0" * 100)
    other = tmp_path / ".tok2.abcd1234.scratch"  # another output's: kept
    other.mkdir()
    build_streaming(EmbeddingSource(tmp_path / "x.npy", row_ids=True), tmp_path / "tok", RQKMeansConfig(**CFG))
    assert not stale.exists() and other.exists()


def test_assign_compares_against_sids_on_disk_when_not_loaded(data, tmp_path):
    """A tokenizer loaded without its SIDs (load_sids=False, as the CLI's assign does) gives
    the same index comparison, read from sids.parquet in batches."""
    ids, x = data
    np.save(tmp_path / "x.npy", x[:5000])
    (tmp_path / "x.ids.txt").write_text("\n".join(ids[:5000]))
    build_streaming(EmbeddingSource(tmp_path / "x.npy", row_ids=True), tmp_path / "tok", RQKMeansConfig(**CFG))
    full = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    light = SemanticTokenizer.from_pretrained(tmp_path / "tok", load_sids=False)
    assert light.codes is None and light.item_ids is None
    np.save(tmp_path / "new.npy", x[4000:])
    (tmp_path / "new.ids.txt").write_text("\n".join(ids[4000:]))
    new = EmbeddingSource(tmp_path / "new.npy", row_ids=True)
    a = assign_streaming(full, new, tmp_path / "a.parquet")
    b = assign_streaming(light, new, tmp_path / "b.parquet", run=ONE_BLOCK)
    for k in ("already_indexed_items", "sids_shared_with_index", "collision_rate", "unique_sids"):
        assert a[k] == b[k], k
    assert a["already_indexed_items"] == 1000
