"""Properties of RQ-Kmeans on seeded data (CONVENTIONS.md #13)."""

import numpy as np
import pytest

from tokenizer_kit.errors import InputError, TokenizerKitError
from tokenizer_kit.evaluation import collision_stats, level_stats
from tokenizer_kit.quantizers import RQKMeans, RQKMeansConfig, parse_codebook_sizes


def _numpy_greedy(x, codebooks, biases=None):
    """Plain reference: full distance matrix per level, argmin, subtract."""
    r = x.astype(np.float64).copy()
    out = []
    for l, c in enumerate(codebooks):
        d = ((r[:, None, :] - c[None, :, :].astype(np.float64)) ** 2).sum(-1)
        if biases is not None:
            d = d + biases[l][None, :]
        k = d.argmin(1)
        out.append(k)
        r -= c[k]
    return np.stack(out, 1)


@pytest.fixture(scope="module")
def fitted(clustered):
    return RQKMeans(codebook_sizes=[16, 16, 16], seed=0).fit(clustered)


def test_decode_is_sum_of_chosen_centroids(fitted, clustered):
    codes = fitted.encode(clustered[:200])
    expect = sum(fitted.codebooks[l][codes[:, l]] for l in range(3))
    np.testing.assert_allclose(fitted.decode(codes), expect, rtol=0, atol=1e-6)


def test_greedy_equals_numpy_reference(fitted, clustered):
    x = clustered[:500]
    ref = _numpy_greedy(x, fitted.codebooks)
    got = fitted.encode(x)
    # ties are measure-zero on continuous data; float32 vs float64 may flip a near-tie
    assert (got == ref).all(axis=1).mean() >= 0.99


def test_fit_codes_equal_encode(fitted, clustered):
    np.testing.assert_array_equal(fitted.fit_codes_, fitted.encode(clustered))


def _errors(q, x, codes):
    return ((x - q.decode(codes)) ** 2).sum(1)


def test_beam_never_worse_than_greedy(fitted, clustered):
    x = clustered[:800]
    g = _errors(fitted, x, fitted.encode(x))
    for beam in (2, 4, 8):
        b = _errors(fitted, x, fitted.encode(x, beam_size=beam))
        assert (b <= g + 1e-6).all()
    b8 = _errors(fitted, x, fitted.encode(x, beam_size=8))
    assert b8.mean() < g.mean()  # on seeded data the beam finds strictly better paths


@pytest.mark.parametrize("beam", [1, 4])
def test_batch_size_invariance(fitted, clustered, beam):
    x = clustered[:601]
    a = fitted.encode(x, batch_size=7, beam_size=beam)
    b = fitted.encode(x, batch_size=100000, beam_size=beam)
    np.testing.assert_array_equal(a, b)


def test_memmap_input(fitted, clustered, tmp_path):
    np.save(tmp_path / "x.npy", clustered[:300])
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(fitted.encode(mm, batch_size=64), fitted.encode(clustered[:300]))


def test_same_seed_same_codes(clustered):
    a = RQKMeans(codebook_sizes=[16, 16], seed=5).fit(clustered)
    b = RQKMeans(codebook_sizes=[16, 16], seed=5).fit(clustered)
    c = RQKMeans(codebook_sizes=[16, 16], seed=6).fit(clustered)
    np.testing.assert_array_equal(a.fit_codes_, b.fit_codes_)
    np.testing.assert_array_equal(a.codebooks[0], b.codebooks[0])
    assert not np.array_equal(a.codebooks[0], c.codebooks[0])


def test_more_levels_reconstruct_better(clustered):
    q = RQKMeans(codebook_sizes=[16, 16, 16, 16], seed=0).fit(clustered)
    errs = []
    for L in range(1, 5):
        c = q.fit_codes_.copy()
        xh = sum(q.codebooks[l][c[:, l]] for l in range(L))
        errs.append(((clustered - xh) ** 2).sum())
    assert all(errs[i + 1] < errs[i] for i in range(3))


def test_state_round_trip(fitted, clustered):
    q2 = RQKMeans.from_state(fitted.config_dict(), fitted.state_tensors())
    np.testing.assert_array_equal(q2.encode(clustered[:300], beam_size=3), fitted.encode(clustered[:300], beam_size=3))


def test_balanced_on_office(office_emb):
    """Issue 3 targets on real data: balanced 3x256 vs plain."""
    _, x = office_emb
    plain = RQKMeans(codebook_sizes=[256] * 3).fit(x)
    bal = RQKMeans(codebook_sizes=[256] * 3, balanced=True).fit(x)

    def rel(q):
        return ((x - q.decode(q.fit_codes_)) ** 2).sum() / (x ** 2).sum()

    cp, cb = collision_stats(plain.fit_codes_), collision_stats(bal.fit_codes_)
    assert cb["collision_rate"] <= 0.02 < cp["collision_rate"]
    for l in range(3):
        assert level_stats(bal.fit_codes_[:, l], 256)["entropy_normalized"] >= 0.98
    assert rel(bal) <= 1.10 * rel(plain)
    # new items use the saved prices: item-wise encoding stays balanced too
    enc = bal.encode(x)
    assert level_stats(enc[:, 1], 256)["entropy_normalized"] >= 0.97
    assert level_stats(plain.fit_codes_[:, 1], 256)["entropy_normalized"] < 0.9


def test_balanced_prices_are_saved(clustered):
    q = RQKMeans(codebook_sizes=[32, 32], balanced=True, seed=1).fit(clustered)
    st = q.state_tensors()
    assert np.abs(st["bias_0"]).max() > 0
    q2 = RQKMeans.from_state(q.config_dict(), st)
    np.testing.assert_array_equal(q2.encode(clustered), q.encode(clustered))
    ref = _numpy_greedy(clustered[:300], q.codebooks, q.biases)
    assert (q.encode(clustered[:300]) == ref).all(axis=1).mean() >= 0.99


def test_too_few_items_error():
    x = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    with pytest.raises(InputError, match=r"needs at least 256 items, got 100; set `codebook_sizes` to 16 or fewer"):
        RQKMeans(codebook_sizes=[256]).fit(x)


def test_encode_dim_mismatch(fitted):
    with pytest.raises(InputError, match="dimension 5 but the RQ-Kmeans codebook expects 32"):
        fitted.encode(np.zeros((3, 5), np.float32))


def test_decode_out_of_range(fitted):
    with pytest.raises(InputError, match=r"level 1 codes must be in \[0, 16\)"):
        fitted.decode(np.array([[0, 16, 0]]))


def test_config_reports_every_error():
    with pytest.raises(TokenizerKitError) as e:
        RQKMeansConfig(codebook_sizes=[1, 8], niter=0, beam_size=0, device="tpu").validate()
    msg = str(e.value)
    for part in ("codebook_sizes[0] must be >= 2, got 1", "niter", "beam_size", "device"):
        assert part in msg


def test_parse_codebook_sizes():
    assert parse_codebook_sizes("256", 3) == [256, 256, 256]
    assert parse_codebook_sizes("8192,8192,8192", 3) == [8192] * 3
    with pytest.raises(TokenizerKitError, match="2 codebook sizes given for 3 levels"):
        parse_codebook_sizes("8,8", 3)
    with pytest.raises(TokenizerKitError, match="not an integer"):
        parse_codebook_sizes("abc", 3)


@pytest.mark.gpu
def test_gpu_kmeans_matches_cpu_quality(clustered):
    from tokenizer_kit.quantizers import faiss_num_gpus

    if faiss_num_gpus() == 0:
        pytest.skip("FAISS has no GPU support here (faiss-cpu): GPU k-means cannot run")

    cpu = RQKMeans(codebook_sizes=[16, 16], device="cpu").fit(clustered)
    gpu = RQKMeans(codebook_sizes=[16, 16], device="cuda").fit(clustered)
    e_cpu = ((clustered - cpu.decode(cpu.fit_codes_)) ** 2).sum()
    e_gpu = ((clustered - gpu.decode(gpu.fit_codes_)) ** 2).sum()
    assert gpu.summary()["device"] == "cuda"
    assert e_gpu <= 1.05 * e_cpu


def test_kmeans_plusplus_init(clustered):
    from tokenizer_kit.quantizers._kmeans import kmeans_plusplus

    c = kmeans_plusplus(clustered[:500], 16, seed=0)
    assert c.shape == (16, 32)
    # seeds are data points, all distinct
    d = ((clustered[:500][:, None, :] - c[None]) ** 2).sum(-1)
    assert np.allclose(d.min(0), 0, atol=1e-6) and len({tuple(r) for r in c.tolist()}) == 16
    q = RQKMeans(codebook_sizes=[16, 16], init="kmeans++", seed=0).fit(clustered)
    q2 = RQKMeans(codebook_sizes=[16, 16], init="kmeans++", seed=0).fit(clustered)
    np.testing.assert_array_equal(q.fit_codes_, q2.fit_codes_)


def test_unknown_config_key_is_a_clear_error():
    with pytest.raises(TokenizerKitError, match=r"invalid RQ-Kmeans config: unknown keys \['nitre'\]"):
        RQKMeans(codebook_sizes=[4], nitre=3)


def test_gpu_torch_cannot_use_runs_kmeans_on_cpu_and_says_so(clustered, monkeypatch, caplog):
    """A GPU FAISS sees but torch does not: k-means runs on the CPU and the summary says cpu."""
    from tokenizer_kit.quantizers import _kmeans

    monkeypatch.setattr(_kmeans, "faiss_num_gpus", lambda: 1)
    monkeypatch.setattr(_kmeans, "_torch_gpu", lambda: False)
    assert _kmeans.resolve_device("auto") == "cuda"
    assert _kmeans.kmeans_device("auto") == "cpu"
    with caplog.at_level("WARNING"):
        assert _kmeans.kmeans_device("cuda") == "cpu"
    assert "torch sees no GPU" in caplog.text
    q = RQKMeans(codebook_sizes=[8, 8], device="cuda").fit(clustered)
    assert q.summary()["device"] == "cpu"
