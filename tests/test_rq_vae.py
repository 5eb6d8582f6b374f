"""RQ-VAE: no collapse, the loss goes down, round trips, resume, determinism, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tokenizer_kit import SemanticTokenizer  # noqa: E402
from tokenizer_kit.errors import TokenizerKitError  # noqa: E402
from tokenizer_kit.evaluation import level_stats  # noqa: E402
from tokenizer_kit.quantizers import get_quantizer_class, list_methods  # noqa: E402
from tokenizer_kit.quantizers._rq_vae import RQVAE, RQVAEConfig, exact_codes, exact_linear, exact_silu  # noqa: E402

SIZES = [32, 32, 32]
FAST = dict(
    latent_dim=16,
    hidden_dims=[64],
    batch_size=128,
    lr=3e-3,
    max_epochs=25,
    warmup_steps=10,
    kmeans_init_samples=2048,
    kmeans_niter=10,
    cpu_threads=1,
    seed=7,
)


def spread_data(n=3000, d=32, clusters=64, seed=0):
    """Well-spread seeded data: a Gaussian mixture with unit-scale centres and noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    lab = rng.integers(0, clusters, n)
    return (centres[lab] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return spread_data()


@pytest.fixture(scope="module")
def fitted(data):
    hist = []
    q = RQVAE(codebook_sizes=SIZES, **FAST).fit(data, on_epoch_end=hist.append)
    return q, hist


def test_registered():
    assert "rq-vae" in list_methods()
    assert get_quantizer_class("rq-vae") is RQVAE


def test_no_collapse_every_level_used(fitted, data):
    q, _ = fitted
    codes = q.encode(data)
    for level, k in enumerate(SIZES):
        st = level_stats(codes[:, level], k)
        assert st["utilization"] >= 0.9, (level, st)
        assert st["entropy_normalized"] > 0.8, (level, st)


def test_loss_goes_down(fitted):
    q, hist = fitted
    assert len(hist) >= 10
    assert hist[-1]["loss"] < 0.8 * hist[0]["loss"]
    assert hist[-1]["val_mse"] < hist[0]["val_mse"]
    s = q.summary()
    assert s["best_val_mse"] <= min(h["val_mse"] for h in hist) + 1e-12
    assert s["n_train"] + s["n_val"] == 3000


def test_encode_decode_round_trip(fitted, data):
    q, _ = fitted
    codes = q.encode(data)
    assert codes.shape == (len(data), 3) and codes.dtype == np.int64
    assert (codes >= 0).all() and (codes < 32).all()
    np.testing.assert_array_equal(codes, q.fit_codes_)
    np.testing.assert_array_equal(codes, q.encode(data, batch_size=97))  # batch-size invariant
    x_hat = q.decode(codes)
    assert x_hat.shape == data.shape and x_hat.dtype == np.float32
    err = ((data - x_hat) ** 2).mean()
    baseline = ((data - data.mean(0)) ** 2).mean()
    rnd = np.random.default_rng(0).integers(0, 32, codes.shape)
    err_rnd = ((data - q.decode(rnd)) ** 2).mean()
    assert err < 0.25 * baseline
    assert err < 0.5 * err_rnd
    # re-encoding a reconstruction keeps the coarse code for most items
    assert (q.encode(x_hat)[:, 0] == codes[:, 0]).mean() > 0.9


def test_decode_rejects_bad_codes(fitted):
    q, _ = fitted
    with pytest.raises(TokenizerKitError, match="level 1 codes must be in"):
        q.decode(np.array([[0, 32, 0]]))
    with pytest.raises(TokenizerKitError, match="shape"):
        q.decode(np.zeros((2, 2), dtype=np.int64))


def test_save_load_round_trip(tmp_path, data):
    tok = SemanticTokenizer.build(data, method="rq-vae", codebook_sizes=SIZES, **{**FAST, "max_epochs": 4})
    tok.save_pretrained(tmp_path / "tok")
    manifest = json.loads((tmp_path / "tok" / "manifest.json").read_text())
    assert manifest["method"] == "rq-vae"
    assert manifest["training"]["epochs"] == 4 and "history" in manifest["training"]
    assert manifest["config"]["dim"] == 32
    back = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    assert isinstance(back.quantizer, RQVAE)
    np.testing.assert_array_equal(back.codes, tok.codes)
    np.testing.assert_array_equal(back.encode(data), tok.codes)
    np.testing.assert_allclose(back.decode(tok.codes), tok.decode(tok.codes), atol=1e-6)
    assert back.metrics["reconstruction_mse"] == pytest.approx(tok.metrics["reconstruction_mse"])


def test_from_state_is_strict(fitted):
    q, _ = fitted
    t = q.state_tensors()
    missing = {k: v for k, v in t.items() if k != "decoder.0.weight"}
    with pytest.raises(TokenizerKitError, match="do not match"):
        RQVAE.from_state(q.config_dict(), missing)
    with pytest.raises(TokenizerKitError, match="do not match"):
        RQVAE.from_state(q.config_dict(), {**t, "extra": np.zeros(2, np.float32)})


def test_deterministic_on_cpu(data):
    cfg = {**FAST, "max_epochs": 3}
    a = RQVAE(codebook_sizes=SIZES, **cfg).fit(data)
    b = RQVAE(codebook_sizes=SIZES, **cfg).fit(data)
    ta, tb = a.state_tensors(), b.state_tensors()
    assert ta.keys() == tb.keys()
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    np.testing.assert_array_equal(a.fit_codes_, b.fit_codes_)


def test_exact_linear_and_silu_match_exact_references():
    """Every output is the fp32 rounding of the exact value: ``fsum`` of the exact products for
    the linear layer, a 50-digit ``decimal`` for SiLU (so no kernel or order can move it)."""
    import decimal
    import math

    rng = np.random.default_rng(0)
    h = rng.standard_normal((200, 97)).astype(np.float32)
    w = (rng.standard_normal((41, 97)) * 0.1).astype(np.float32)
    b = rng.standard_normal(41).astype(np.float32)
    want = np.array(
        [[np.float32(math.fsum([*(h[i].astype(float) * w[k].astype(float)).tolist(), float(b[k])])) for k in range(41)] for i in range(200)]
    )
    np.testing.assert_array_equal(exact_linear(h, w, b), want)
    v = np.concatenate([rng.standard_normal(3000) * 6, [0.0, -0.0, 88.0, -88.0, -750.0, 1e30, -1e30]]).astype(np.float32)
    ctx = decimal.Context(prec=60)

    def silu(t):
        if abs(t) > 200:
            return np.float32(t if t > 0 else -0.0)
        d = decimal.Decimal(float(t))
        return np.float32(float(ctx.divide(d, ctx.add(1, ctx.exp(-d)))))

    np.testing.assert_array_equal(exact_silu(v[None, :])[0], np.array([silu(t) for t in v]))
    # the function torch trains with (whose own rounding is a few ulp off)
    np.testing.assert_allclose(exact_silu(v[None, :])[0], torch.nn.functional.silu(torch.from_numpy(v)).numpy(), rtol=1e-6, atol=1e-37)


def test_training_assignment_is_the_exact_rule():
    """The VQ assignment inside training picks the exact nearest code (ties to the lowest),
    also where the fp32 GEMM cannot tell two codes apart."""
    rng = np.random.default_rng(1)
    c = rng.standard_normal((64, 16)).astype(np.float32)
    r = rng.standard_normal((500, 16)).astype(np.float32)
    r[:50] = (c[3] + c[7]) / 2  # equidistant from codes 3 and 7 (up to fp32 rounding)
    d = ((r.astype(np.float64)[:, None, :] - c.astype(np.float64)[None]) ** 2).sum(-1)
    want = d.argmin(1)
    np.testing.assert_array_equal(exact_codes(torch.from_numpy(r), torch.from_numpy(c)).numpy(), want)


# One tiny build per (BLAS kernel, thread count); every child must give the same bytes. Threads
# differ between the children (environment) and inside each (torch.set_num_threads and a
# BLAS limit before the second build): the library must not depend on either.
_CHILD = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits
    from tokenizer_kit.quantizers._rq_vae import RQVAE

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((32, 384)).astype(np.float32)
    x = (centres[rng.integers(0, 32, 1100)] + 0.3 * rng.standard_normal((1100, 384))).astype(np.float32)
    # Office's widths (smaller ones ran the same on 1 and 2 threads even before: MKL and torch
    # only split GEMMs and reductions of this size); 2 steps an epoch
    cfg = dict(codebook_sizes=[16, 16, 16], latent_dim=64, hidden_dims=[512, 256], batch_size=512, max_epochs=3,
               warmup_steps=2, kmeans_init_samples=1024, kmeans_niter=5, restart_interval=3, seed=3)
    h = lambda b: hashlib.sha256(b).hexdigest()[:16]
    out = []
    for threads in json.loads(sys.argv[1]):
        torch.set_num_threads(threads)
        with threadpool_limits(threads, user_api="blas"):
            q = RQVAE(**cfg).fit(x)
            w = b"".join(v.tobytes() for _, v in sorted(q.state_tensors().items()))
            enc = [h(q.encode(x, batch_size=bs).tobytes()) for bs in (97, 4096)]
            one_by_one = bool((q.encode(x[:64], batch_size=1) == q.fit_codes_[:64]).all())
        out.append(dict(threads=threads, weights=h(w), codes=h(q.fit_codes_.tobytes()), encode=enc, one_by_one=one_by_one))
    print(json.dumps(out))
    """
)


def test_build_and_encode_identical_across_blas_kernels_and_threads():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = {"Prescott": (1, [1, 2]), "Haswell": (2, [2, 1])}
    procs = {}
    for core, (env_threads, inner) in runs.items():
        env = dict(os.environ, OPENBLAS_CORETYPE=core, PYTHONPATH=root)
        env.update({k: str(env_threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        procs[core] = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(inner)], env=env, cwd=root,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = []
    for core, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        results += [dict(r, core=core) for r in json.loads(out.strip().splitlines()[-1])]
    assert len(results) == 4
    first = results[0]
    for r in results:
        assert r["encode"] == [first["codes"]] * 2 and r["one_by_one"], r  # every batch size gives the fitted codes
        assert (r["weights"], r["codes"]) == (first["weights"], first["codes"]), (r, first)


class _Stop(Exception):
    pass


def test_resume_equals_uninterrupted(tmp_path, data):
    cfg = {**FAST, "max_epochs": 6, "restart_interval": 5}
    full = RQVAE(codebook_sizes=SIZES, **cfg).fit(data)

    def stop_at_3(state):
        if state["epoch"] == 2:
            raise _Stop

    ck = tmp_path / "ck"
    with pytest.raises(_Stop):
        RQVAE(codebook_sizes=SIZES, checkpoint_dir=str(ck), **cfg).fit(data, on_epoch_end=stop_at_3)
    saved = json.loads((ck / "trainer_state.json").read_text())
    assert saved["state"]["epoch"] == 3
    resumed = RQVAE(codebook_sizes=SIZES, resume_from=str(ck), **cfg).fit(data)
    assert resumed.summary()["epochs"] == 6 and resumed.summary()["resumed_from"] == str(ck)
    ta, tb = full.state_tensors(), resumed.state_tensors()
    for k in ta:
        np.testing.assert_allclose(ta[k], tb[k], atol=1e-5, rtol=1e-5, err_msg=k)
    assert (full.fit_codes_ == resumed.fit_codes_).mean() > 0.99


def test_resume_rejects_other_run(tmp_path, data):
    ck = tmp_path / "ck"
    RQVAE(codebook_sizes=SIZES, checkpoint_dir=str(ck), **{**FAST, "max_epochs": 1}).fit(data)
    with pytest.raises(TokenizerKitError, match="does not match"):
        RQVAE(codebook_sizes=SIZES, resume_from=str(ck), **{**FAST, "latent_dim": 8}).fit(data)
    with pytest.raises(TokenizerKitError, match="no trainer_state.json"):
        RQVAE(codebook_sizes=SIZES, resume_from=str(tmp_path), **FAST).fit(data)


def test_config_reports_every_error():
    with pytest.raises(TokenizerKitError) as e:
        RQVAEConfig(codebook_sizes=[1], beta=-1.0, lr=0.0, device="tpu").validate()
    msg = str(e.value)
    for part in ("codebook_sizes[0] must be >= 2, got 1", "beta", "lr", "device"):
        assert part in msg
    assert "\n" not in msg
    with pytest.raises(TokenizerKitError, match=r"invalid RQ-VAE config: unknown keys \['epochs'\]"):
        RQVAEConfig.from_dict({"epochs": 3})


def test_too_few_items_and_unfitted():
    with pytest.raises(TokenizerKitError, match="too few items"):
        RQVAE(codebook_sizes=[64]).fit(np.zeros((10, 4), np.float32))
    with pytest.raises(TokenizerKitError, match="not fitted"):
        RQVAE(codebook_sizes=[4]).encode(np.zeros((10, 4), np.float32))


def test_fit_reads_memmap_and_rejects_wrong_dim(tmp_path, fitted, data):
    q, _ = fitted
    np.save(tmp_path / "x.npy", data[:600])
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(q.encode(mm), q.encode(data[:600]))
    with pytest.raises(TokenizerKitError, match="dimension 8"):
        q.encode(np.zeros((3, 8), np.float32))
    small = RQVAE(codebook_sizes=[8, 8], **{**FAST, "max_epochs": 2}).fit(mm)
    assert small.fit_codes_.shape == (600, 2)


def test_cli_build_rq_vae(tmp_path, data):
    from typer.testing import CliRunner

    from tokenizer_kit.cli.app import app

    np.save(tmp_path / "x.npy", data[:1000])
    np.save(tmp_path / "x.ids.npy", np.arange(1000, dtype=np.int64))
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({k: v for k, v in FAST.items() if k != "seed"} | {"max_epochs": 3}))
    runner = CliRunner()
    out = tmp_path / "tok"
    res = runner.invoke(
        app,
        ["build-codebook", str(tmp_path / "x.npy"), "--out", str(out), "--method", "rq-vae", "--levels", "2",
         "--codebook-size", "16", "--config", str(cfg), "--checkpoint-dir", str(tmp_path / "ck"), "--format", "json"],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)["tokenizers"][0]
    assert rep["method"] == "rq-vae" and rep["n_items"] == 1000
    assert (tmp_path / "ck" / "optimizer.pt").exists()
    # --resume-from the finished checkpoint: no epochs left, the same weights come back
    out2 = tmp_path / "tok_resumed"
    res = runner.invoke(
        app,
        ["build-codebook", str(tmp_path / "x.npy"), "--out", str(out2), "--method", "rq-vae", "--levels", "2",
         "--codebook-size", "16", "--config", str(cfg), "--resume-from", str(tmp_path / "ck"), "--format", "json"],
    )
    assert res.exit_code == 0, res.output
    a, b = SemanticTokenizer.from_pretrained(out), SemanticTokenizer.from_pretrained(out2)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert json.loads((out2 / "manifest.json").read_text())["training"]["resumed_from"] == str(tmp_path / "ck")
    res = runner.invoke(app, ["report", str(out), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tokenizers"][0]["n_items"] == 1000
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epochs": 3}))
    res = runner.invoke(app, ["build-codebook", str(tmp_path / "x.npy"), "--out", str(tmp_path / "t2"), "--method", "rq-vae", "--config", str(bad)])
    assert res.exit_code == 2
    assert "epochs is now called --max-epochs" in res.output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_trains_without_collapse(data):
    q = RQVAE(codebook_sizes=SIZES, device="cuda", bf16=True, **{k: v for k, v in FAST.items() if k != "cpu_threads"}).fit(data)
    s = q.summary()
    assert s["device"] == "cuda" and s["bf16"] is True
    codes = q.encode(data)
    for level, k in enumerate(SIZES):
        assert level_stats(codes[:, level], k)["utilization"] >= 0.9
    assert s["final_train_loss"] < s["first_train_loss"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_assignment_equals_cpu():
    """The training assignment on CUDA takes the same codes as on the CPU (the exact rule);
    CUDA training itself is not claimed to be bit-reproducible."""
    rng = np.random.default_rng(2)
    c = rng.standard_normal((256, 32)).astype(np.float32)
    r = rng.standard_normal((4096, 32)).astype(np.float32)
    r[:100] = (c[5] + c[9]) / 2
    cpu = exact_codes(torch.from_numpy(r), torch.from_numpy(c)).numpy()
    gpu = exact_codes(torch.from_numpy(r).cuda(), torch.from_numpy(c).cuda()).cpu().numpy()
    np.testing.assert_array_equal(gpu, cpu)
