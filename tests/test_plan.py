"""Capacity planning (issue 14): predicted collisions per shape, the recommendation, the
build's early warning, and the CLI verb."""

import json
import logging

import numpy as np
import pytest
from typer.testing import CliRunner

from tokenizer_kit.build._metrics import collision_stats
from tokenizer_kit.build._streaming import build_streaming
from tokenizer_kit.cli.app import app
from tokenizer_kit.errors import InputError
from tokenizer_kit.io import EmbeddingSource, make_clustered_embeddings
from tokenizer_kit.quantizers import RQKMeansConfig
from tokenizer_kit.quantizers._plan import PlanConfig, parse_shapes, plan, predict_collisions


def test_parse_shapes():
    assert parse_shapes("3x256, 4X1024") == [(3, 256), (4, 1024)]
    for bad in ("3x", "x256", "3*256", "0x256", "3x1", ""):
        with pytest.raises(InputError):
            parse_shapes(bad)


def test_config_reports_every_error():
    with pytest.raises(Exception, match="sample must be >= 100.*max_collision_rate must be in"):
        PlanConfig(sample=5, max_collision_rate=2.0).validate()


def test_whole_catalogue_is_measured_not_predicted():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, size=(3000, 2))
    p = predict_collisions(codes, 3000)
    ref = collision_stats(codes)
    assert p["measured"] and p["collision_rate"] == ref["collision_rate"] and p["largest_bucket"] == ref["largest_bucket"]


def _cells_to_codes(cells, k):
    return np.stack([cells // k, cells % k], 1)


@pytest.mark.parametrize("n_cells, n_total", [(200_000, 100_000), (50_000, 200_000)])
def test_uniform_cells_extrapolate_to_the_poisson_answer(n_cells, n_total):
    """Items spread evenly over C cells: colliding share at N is 1 - (1 - 1/C)^(N-1)."""
    rng = np.random.default_rng(1)
    k = int(np.ceil(np.sqrt(n_cells)))
    sample = rng.integers(0, n_cells, size=n_total // 16)
    p = predict_collisions(_cells_to_codes(sample, k), n_total)
    want = 1 - (1 - 1 / n_cells) ** (n_total - 1)
    assert not p["measured"]
    assert abs(p["collision_rate"] - want) < 0.03, (p["collision_rate"], want)


def test_skewed_cells_extrapolate_within_a_few_points():
    """Cell masses log-normal (sigma 1.5): predict N = 16 m from m items, against the truth
    measured on N items drawn from the same cells."""
    rng = np.random.default_rng(2)
    n_cells, n_total = 300_000, 320_000
    mass = rng.lognormal(0.0, 1.5, size=n_cells)
    mass /= mass.sum()
    truth = rng.choice(n_cells, size=n_total, p=mass)
    k = int(np.ceil(np.sqrt(n_cells)))
    want = collision_stats(_cells_to_codes(truth, k))
    p = predict_collisions(_cells_to_codes(truth[: n_total // 16], k), n_total)
    assert abs(p["collision_rate"] - want["collision_rate"]) < 0.05, (p["collision_rate"], want["collision_rate"])
    assert want["largest_bucket"] / 2 <= p["largest_bucket"] <= want["largest_bucket"] * 2


def test_plan_recommends_and_explains():
    x = make_clustered_embeddings(4000, 16, n_topics=16, n_sub=8, seed=0)
    res = plan(x, shapes="2x8,3x8,2x64,2x8192", catalogue_size=40_000, sample=4000)
    by = {s["shape"]: s for s in res["shapes"]}
    assert by["2x8192"]["skipped"] and "fewer than" in by["2x8192"]["skipped"]
    assert by["2x8"]["prediction"]["collision_rate"] > by["3x8"]["prediction"]["collision_rate"]
    assert by["2x8"]["prediction"]["collision_rate"] > 0.9  # 40k items in 64 SIDs
    assert res["recommended"] in by and res["reason"]
    assert by["2x8"]["prediction"]["largest_bucket"] >= 40_000 / 64


def test_build_warns_when_the_shape_is_crowded(tmp_path, caplog):
    x = make_clustered_embeddings(3000, 8, n_topics=8, n_sub=4, seed=0)
    np.save(tmp_path / "x.npy", x)
    with caplog.at_level(logging.WARNING):
        tok = build_streaming(EmbeddingSource(tmp_path / "x.npy", row_ids=True), tmp_path / "tok", RQKMeansConfig(codebook_sizes=[4, 4], seed=0))
    assert "predicted to give" in caplog.text and "tokenizer-kit plan" in caplog.text
    assert tok.info["predicted_collision_rate"] == pytest.approx(tok.metrics["collision_rate"], abs=0.05)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        tok = build_streaming(EmbeddingSource(tmp_path / "x.npy", row_ids=True), tmp_path / "tok2", RQKMeansConfig(codebook_sizes=[64, 64], seed=0),
                              warn_collisions=0.9)
    assert tok.metrics["collision_rate"] < 0.9 and "predicted to give" not in caplog.text


def test_plan_cli_json(tmp_path):
    x = make_clustered_embeddings(2000, 8, seed=3)
    np.save(tmp_path / "x.npy", x)
    r = CliRunner().invoke(app, ["plan", str(tmp_path / "x.npy"), "--shapes", "2x16,3x16", "--catalogue-size", "20000", "--format", "json"])  # no ids: plan needs none
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert [s["shape"] for s in res["shapes"]] == ["2x16", "3x16"] and res["catalogue_size"] == 20000
    r = CliRunner().invoke(app, ["plan", str(tmp_path / "x.npy"), "--shapes", "3y16"])
    assert r.exit_code == 2 and "LEVELSxCODES" in r.stderr


def test_build_codebook_cli_warns_on_a_crowded_shape(tmp_path):
    """The verb, not only the library: 3,000 items in a 4 x 4 code space (16 SIDs) get the warning
    naming the predicted share and `tokenizer-kit plan`; a roomy one (3 x 64) gets none."""
    x = make_clustered_embeddings(3000, 8, n_topics=8, n_sub=4, seed=0)
    np.save(tmp_path / "x.npy", x)
    args = ["build-codebook", str(tmp_path / "x.npy"), "--row-ids", "--seed", "0", "--no-index"]
    r = CliRunner().invoke(app, args + ["--out", str(tmp_path / "crowded"), "--levels", "2", "--codebook-size", "4"])
    assert r.exit_code == 0, r.output
    assert "predicted to give" in r.stderr and "tokenizer-kit plan" in r.stderr
    r = CliRunner().invoke(app, args + ["--out", str(tmp_path / "roomy"), "--levels", "3", "--codebook-size", "64"])
    assert r.exit_code == 0, r.output
    assert "predicted to give" not in r.stderr


def test_scipy_free_pieces_agree_with_scipy():
    """The prediction's Poisson tail and Nelder-Mead are numpy-only (a streaming build does not
    import scipy): they agree with scipy.stats.poisson.sf and scipy.optimize.minimize."""
    from scipy.optimize import minimize
    from scipy.stats import poisson

    from tokenizer_kit.quantizers._plan import _nelder_mead, poisson_at_least

    lam = np.concatenate([[0.0, 1e-300, 1e-12, 0.3], np.geomspace(1e-3, 1e7, 200), [9.0, 10.0, 11.0, 4999.0, 5000.0, 5001.0]])
    for b in (1, 2, 3, 7, 50, 1000, 5000, 65536):
        ref = poisson.sf(b - 1, lam)
        got = poisson_at_least(b, lam)
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-300, err_msg=str(b))

    def rosen(v):
        return float((1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2)

    for x0 in ([-1.2, 1.0], [0.0, 0.0], [2.0, -1.0]):
        r = minimize(rosen, x0=x0, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 600})
        x, fun = _nelder_mead(rosen, x0, xatol=1e-4, fatol=1e-6, maxiter=600)
        assert np.array_equal(x, r.x) and fun == r.fun, (x0, x, r.x)


def test_streaming_build_does_not_import_scipy(tmp_path):
    import subprocess
    import sys

    x = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys; from tokenizer_kit.build import build_streaming; from tokenizer_kit.io import EmbeddingSource; "
            "from tokenizer_kit.quantizers import RQKMeansConfig; "
            f"build_streaming(EmbeddingSource({str(tmp_path / 'x.npy')!r}, row_ids=True), {str(tmp_path / 't')!r}, "
            "RQKMeansConfig(codebook_sizes=[8, 8], niter=3, max_points_per_centroid=32)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
