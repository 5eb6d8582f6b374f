"""Capacity planning: how many items will share a SID, for which codebook shape, before a build.

Three levels of 256 codes give 16.7M SIDs, but items do not spread evenly over them: plain
RQ-Kmeans on real catalogues leaves 12-31% of a few thousand items sharing a SID. What
matters is the distribution of items over SID cells, and it can be measured on a sample.

For each candidate shape (``3x256``, ``3x1024``, ...) :func:`plan` trains RQ-Kmeans on a
sample of the embeddings (at most ``points_per_centroid x K`` points, fewer iterations than a
build: planning needs the cells' sizes, not the best centroids), encodes a planning sample
of ``m`` items, and measures the collision curve ``f(s)``, the share of ``s`` random items
whose SID is shared with another of them, at ``s = m, m/2, m/4, ...``. It then fits a model
of the cell masses and extrapolates to the catalogue size ``N``:

* The mass ``p`` of the SID cell of a random item is modelled as log-normal,
  ``log p ~ N(mu, sigma^2)`` (item-weighted). ``log p(cell) = sum_l log p(code_l | prefix)``
  is a sum over levels, which is what makes a log-normal a natural first model; it also
  covers near-duplicate items, which behave as small cells of high mass.
* Then ``f(s) = 1 - E[(1 - p)^(s-1)]``; ``mu`` and ``sigma`` are fitted to the measured
  points (least squares, each point weighted by its binomial variance).
* The expected number of cells holding at least ``b`` of ``N`` items is
  ``E[P(Poisson(N p) >= b) / p]``; the predicted largest bucket is the largest ``b`` for which
  it is at least 1/2 (and never below the sample's largest bucket scaled by ``N / m`` when
  that bucket is a real cluster of >= 5 items).
* The suffix policy numbers the items of each bucket: its extra level needs as many codes as
  the largest bucket.

When the sample is the whole catalogue (``m == N``) the numbers are measured, not predicted.
The prediction's error against real builds is in ``benchmarks/results/plan_check.json``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from .._config import ValidatedConfig, setting
from .._progress import Progress, as_progress
from ..errors import InputError

__all__ = ["PlanConfig", "plan", "parse_shapes", "predict_collisions", "collision_curve", "DEFAULT_SHAPES"]

logger = logging.getLogger(__name__)

DEFAULT_SHAPES = "3x256,4x256,3x1024,3x4096,3x8192"


def parse_shapes(spec: str | Sequence[str]) -> list[tuple[int, int]]:
    """``"3x256,4x256"`` -> [(3, 256), (4, 256)] (levels x codes per level)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for it in items:
        it = str(it).strip().lower()
        if not it:
            continue
        a, sep, b = it.partition("x")
        if not sep or not a.isdigit() or not b.isdigit() or int(a) < 1 or int(b) < 2:
            raise InputError(f"codebook shape {it!r} is not LEVELSxCODES (e.g. 3x256); give a comma-separated list")
        out.append((int(a), int(b)))
    if not out:
        raise InputError("no codebook shapes given; e.g. 3x256,3x1024,4x256")
    return out


@dataclass
class PlanConfig(ValidatedConfig):
    label = "plan"

    shapes: str = setting(DEFAULT_SHAPES, help="Candidate shapes, LEVELSxCODES, comma-separated.")
    catalogue_size: int = setting(0, help="Items in the whole catalogue (0: the number of embeddings given).", bounds=(0, None))
    sample: int = setting(200_000, help="Items encoded per shape to measure the collision curve.", bounds=(100, None))
    points_per_centroid: int = setting(256, help="Training points per code, as a build uses (capped by max_train_points).",
                                       bounds=(1, None))
    max_train_points: int = setting(262_144, help="At most this many training points per shape (large K trains on fewer per code).",
                                    bounds=(1, None))
    niter: int = setting(10, help="k-means iterations per level when planning.", bounds=(1, None))
    max_collision_rate: float = setting(0.05, help="Recommend the smallest shape predicted to stay at or below this share of colliding items.",
                                        bounds=(0, 1))
    balanced: bool = setting(False, help="Plan for balanced builds (the codebook stage's balanced) instead of plain codes.")
    normalize: bool = setting(False, help="L2-normalise embeddings first (as the codebook stage's normalize).")
    seed: int = setting(0, help="Random seed (samples, k-means).", bounds=(0, 2**30))

    def errors(self) -> list[str]:
        # the shapes' syntax: a string a range cannot describe
        try:
            parse_shapes(self.shapes)
        except InputError as e:
            return [str(e)]
        return []


# ---- the collision model ------------------------------------------------------------------
def _keys(codes: np.ndarray) -> np.ndarray:
    """One int per row identifying the SID (mixed radix when it fits in int64, else np.unique)."""
    codes = np.asarray(codes, np.int64)
    hi = codes.max(0) + 1
    if float(np.prod(hi.astype(np.float64))) < 2.0**62:
        key = np.zeros(len(codes), np.int64)
        for l in range(codes.shape[1]):
            key = key * int(hi[l]) + codes[:, l]
        return key
    return np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _colliding_share(keys: np.ndarray) -> float:
    _, inv, cnt = np.unique(keys, return_inverse=True, return_counts=True)
    return float((cnt[inv] > 1).mean()) if len(keys) else 0.0


def collision_curve(codes: np.ndarray, *, seed: int = 0, min_size: int = 500, repeats: int = 4) -> list[tuple[int, float]]:
    """``[(s, f(s)), ...]``: the colliding share among ``s`` random rows of ``codes``, for
    ``s = m, m/2, m/4, ...`` down to ``min_size`` (mean of ``repeats`` random subsets)."""
    keys = _keys(codes)
    m = len(keys)
    rng = np.random.default_rng(seed)
    out = [(m, _colliding_share(keys))]
    s = m // 2
    perms = [rng.permutation(m) for _ in range(repeats)]
    while s >= min_size:
        out.append((s, float(np.mean([_colliding_share(keys[p[:s]]) for p in perms]))))
        s //= 2
    return out[::-1]


_GRID = np.linspace(-7.0, 7.0, 281)  # standard-normal nodes for E[g(log p)]
_W = np.exp(-0.5 * _GRID**2)
_W /= _W.sum()


def _logp(mu: float, sigma: float) -> np.ndarray:
    return np.minimum(mu + sigma * _GRID, 0.0)  # a cell's mass is at most 1


def _f_model(s: float, mu: float, sigma: float) -> float:
    p = np.exp(_logp(mu, sigma))
    return float(1.0 - (_W * np.exp((s - 1.0) * np.log1p(-np.minimum(p, 1 - 1e-12)))).sum())


def _nelder_mead(f, x0: list[float], *, xatol: float, fatol: float, maxiter: int) -> tuple[np.ndarray, float]:
    """Minimise ``f`` from ``x0`` with the Nelder-Mead simplex, step for step as
    ``scipy.optimize.minimize(method="Nelder-Mead")`` without bounds (initial simplex 5% along
    each coordinate, reflection 1, expansion 2, contraction 0.5, shrink 0.5, the same stopping
    rule): the same optimum as scipy's, without importing scipy.optimize (most of a
    streaming build's start-up). Returns (x, f(x))."""
    x0 = np.asarray(x0, dtype=np.float64).ravel()
    n = len(x0)
    sim = np.empty((n + 1, n), np.float64)
    sim[0] = x0
    for k in range(n):
        y = x0.copy()
        y[k] = (1 + 0.05) * y[k] if y[k] != 0 else 0.00025
        sim[k + 1] = y
    fsim = np.array([f(v.copy()) for v in sim], np.float64)
    ind = np.argsort(fsim)
    sim, fsim = sim[ind], fsim[ind]
    it = 1
    while it < maxiter:
        if np.max(np.abs(sim[1:] - sim[0])) <= xatol and np.max(np.abs(fsim[0] - fsim[1:])) <= fatol:
            break
        sim, fsim = _nelder_mead_step(f, sim, fsim)
        it += 1
        ind = np.argsort(fsim)
        sim, fsim = sim[ind], fsim[ind]
    return sim[0], float(np.min(fsim))


def _nelder_mead_step(f, sim: np.ndarray, fsim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One reflect / expand / contract / shrink step of :func:`_nelder_mead` (in place)."""
    xbar = np.add.reduce(sim[:-1], 0) / (len(sim) - 1)
    xr = 2.0 * xbar - sim[-1]
    fxr = f(xr.copy())
    if fxr < fsim[0]:
        xe = 3.0 * xbar - 2.0 * sim[-1]
        fxe = f(xe.copy())
        sim[-1], fsim[-1] = (xe, fxe) if fxe < fxr else (xr, fxr)
        return sim, fsim
    if fxr < fsim[-2]:
        sim[-1], fsim[-1] = xr, fxr
        return sim, fsim
    if fxr < fsim[-1]:
        xc = 1.5 * xbar - 0.5 * sim[-1]
        fxc = f(xc.copy())
        if fxc <= fxr:
            sim[-1], fsim[-1] = xc, fxc
            return sim, fsim
    else:
        xcc = 0.5 * xbar + 0.5 * sim[-1]
        fxcc = f(xcc.copy())
        if fxcc < fsim[-1]:
            sim[-1], fsim[-1] = xcc, fxcc
            return sim, fsim
    for j in range(1, len(sim)):  # shrink towards the best vertex
        sim[j] = sim[0] + 0.5 * (sim[j] - sim[0])
        fsim[j] = f(sim[j].copy())
    return sim, fsim


def _fit(curve: list[tuple[int, float]], c_pairs: float) -> tuple[float, float]:
    pts = [(s, f) for s, f in curve if s >= 2]
    s_arr = np.array([p[0] for p in pts], np.float64)
    f_arr = np.array([p[1] for p in pts], np.float64)
    var = np.maximum(f_arr * (1 - f_arr), 1.0 / s_arr) / s_arr

    def loss(theta):
        mu, ls = theta
        sigma = math.exp(ls)
        pred = np.array([_f_model(s, mu, sigma) for s in s_arr])
        return float(((pred - f_arr) ** 2 / var).sum())

    mu0 = math.log(max(c_pairs, 1e-12)) - 0.5
    best = None
    for ls0 in (-1.0, 0.0, 0.7, 1.2):
        x, fun = _nelder_mead(loss, [mu0, ls0], xatol=1e-4, fatol=1e-6, maxiter=600)
        if best is None or fun < best[1]:
            best = (x, fun)
    return float(best[0][0]), float(math.exp(best[0][1]))


def poisson_at_least(b: int, lam: np.ndarray) -> np.ndarray:
    """``P(X >= b)`` for ``X ~ Poisson(lam)`` (each of ``lam``), ``b >= 1`` an integer: the upper
    tail summed from ``b`` where ``lam < b`` (its terms fall from ``b`` on), one minus the lower
    tail below ``b`` otherwise (then at least about one half, so no cancellation);
    either way only the terms within 12 standard deviations of the tail's largest term (the
    others are below 1e-30 of it). Agrees with ``scipy.stats.poisson.sf(b - 1, lam)`` to about
    1e-12, without importing scipy."""
    b = int(b)
    lam = np.asarray(lam, np.float64)
    w = int(12 * math.sqrt(max(b, 1)) + 60)
    up = np.arange(b, b + w, dtype=np.float64)
    lo = np.arange(max(0, b - w), b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        loglam = np.log(lam)[:, None]

        def terms(k):
            lg = np.array([math.lgamma(v + 1.0) for v in k.tolist()], np.float64)
            t = np.exp(k[None, :] * loglam - lam[:, None] - lg[None, :])
            return np.where(np.isnan(t), 0.0, t).sum(1)

        upper = terms(up)
        lower = terms(lo) if len(lo) else np.zeros_like(lam)
    return np.where(lam < b, upper, 1.0 - lower)


def _cells_at_least(b: int, n: float, mu: float, sigma: float) -> float:
    p = np.exp(_logp(mu, sigma))
    return float((_W * poisson_at_least(b, n * p) / p).sum())


def predict_collisions(codes: np.ndarray, n_total: int, *, seed: int = 0) -> dict[str, Any]:
    """Predicted collisions among ``n_total`` items from the codes (m, L) of a random sample.

    Returns ``collision_rate`` (share of items whose SID is shared, before any policy),
    ``largest_bucket``, ``suffix_codes`` (codes the suffix policy's extra level needs),
    ``unique_sids`` and the measured curve / fitted model behind them.
    """
    codes = np.asarray(codes)
    m = len(codes)
    if m == 0:
        raise InputError("no codes to plan from")
    keys = _keys(codes)
    _, cnt = np.unique(keys, return_counts=True)
    measured = {"sample_items": int(m), "sample_collision_rate": float(cnt[cnt > 1].sum() / m), "sample_largest_bucket": int(cnt.max())}
    if n_total <= m:
        return {
            **measured,
            "measured": True,
            "collision_rate": measured["sample_collision_rate"],
            "largest_bucket": int(cnt.max()),
            "suffix_codes": int(cnt.max()),
            "unique_sids": int(len(cnt)),
        }
    curve = collision_curve(codes, seed=seed)
    c_pairs = float((cnt * (cnt - 1)).sum() / max(m * (m - 1), 1))
    mu, sigma = _fit(curve, c_pairs)
    f_n = _f_model(n_total, mu, sigma)
    lo, hi = 1, 2
    while _cells_at_least(hi, n_total, mu, sigma) >= 0.5 and hi < n_total:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _cells_at_least(mid, n_total, mu, sigma) >= 0.5:
            lo = mid
        else:
            hi = mid
    largest = lo
    if cnt.max() >= 5:  # a real cluster in the sample (near-duplicates): it grows with N
        largest = max(largest, int(round(cnt.max() * n_total / m)))
    p = np.exp(_logp(mu, sigma))
    cells = float((_W * (-np.expm1(n_total * np.log1p(-np.minimum(p, 1 - 1e-12)))) / p).sum())
    return {
        **measured,
        "measured": False,
        "collision_rate": float(min(max(f_n, 0.0), 1.0)),
        "largest_bucket": int(largest),
        "suffix_codes": int(largest),
        "unique_sids": int(min(round(cells), n_total)),
        "model": {"log_p_mean": mu, "log_p_std": sigma, "curve": [[int(s), float(f)] for s, f in curve]},
    }


# ---- planning over shapes -------------------------------------------------------------------
@dataclass
class ShapePlan:
    levels: int
    codes_per_level: int
    sid_space: int
    load_factor: float  # catalogue items per SID
    prediction: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str | None = None

    @property
    def shape(self) -> str:
        return f"{self.levels}x{self.codes_per_level}"

    def as_dict(self) -> dict[str, Any]:
        return {"shape": self.shape, **asdict(self)}


def plan(source, config: PlanConfig | None = None, *, progress: Progress | None = None, **kwargs) -> dict[str, Any]:
    """Predict collisions for every candidate shape and recommend one (see the module doc).

    ``source``: an (n, d) array, a path/URI the streaming readers open, or an
    ``EmbeddingStream``. ``config`` (or keyword settings of :class:`PlanConfig`).
    """
    from ..io import EmbeddingStream, as_float32_vectors, open_embeddings

    if config is None:
        cfg = PlanConfig.from_dict(kwargs)
    elif kwargs:
        cfg = PlanConfig.from_dict({**asdict(config), **kwargs})
    else:
        cfg = config
    cfg.validate()
    shapes = parse_shapes(cfg.shapes)
    if isinstance(source, np.ndarray) or hasattr(source, "detach"):
        x_all = as_float32_vectors(source, "embeddings")
        n_in = len(x_all)
        take = lambda rows: np.ascontiguousarray(x_all[rows])  # noqa: E731
    else:
        stream = source if isinstance(source, EmbeddingStream) else open_embeddings(source)
        n_in = stream.n
        take = stream.take
    if n_in == 0:
        raise InputError("no embeddings to plan from")
    n_total = cfg.catalogue_size or n_in
    if n_total < n_in:
        raise InputError(f"catalogue_size {n_total} is smaller than the {n_in} embeddings given")
    m = min(cfg.sample, n_in)
    rng = np.random.default_rng([cfg.seed, 0x91A])
    rows = np.arange(n_in) if m == n_in else np.sort(rng.choice(n_in, m, replace=False))
    x = take(rows)
    if cfg.normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    out = []
    with as_progress(progress).task("plan", total=len(shapes), unit="shape") as task:
        for levels, k in shapes:
            out.append(_plan_shape(x, levels, k, cfg, n_total=n_total))
            task.advance(1)
    rec, reason = _recommend(out, cfg.max_collision_rate)
    return {
        "catalogue_size": int(n_total),
        "embeddings_given": int(n_in),
        "sample": int(m),
        "config": asdict(cfg),
        "shapes": [s.as_dict() for s in out],
        "recommended": rec.shape if rec else None,
        "reason": reason,
    }


def _plan_shape(x: np.ndarray, levels: int, k: int, cfg: PlanConfig, *, n_total: int) -> ShapePlan:
    """Train one candidate shape on the sample ``x`` and predict its collisions on ``n_total`` items."""
    from ._base import suggest_codebook_size
    from ._rq_kmeans import RQKMeans

    m = len(x)
    space = float(k) ** levels
    sp = ShapePlan(levels, k, int(min(space, 2**63 - 1)), n_total / space)
    if m < k:
        sp.skipped = f"the sample has {m} items, fewer than {k} codes"
        return sp
    if n_total < 4 * k:
        sp.skipped = f"{n_total} items leave fewer than 4 per level-1 code; use at most {suggest_codebook_size(n_total)} codes"
        return sp
    t0 = time.perf_counter()
    ppc = max(1, min(cfg.points_per_centroid, cfg.max_train_points // k))
    q = RQKMeans(
        codebook_sizes=[k] * levels, niter=cfg.niter, seed=cfg.seed, balanced=cfg.balanced,
        max_points_per_centroid=ppc, device="cpu" if not _gpu() else "auto",
    ).fit(x)
    sp.prediction = predict_collisions(q.fit_codes_, n_total, seed=cfg.seed)
    trained = min(m, ppc * k)
    sp.prediction["train_points"] = int(trained)
    if trained < min(n_total, 256 * k) and trained < 10 * k:
        sp.prediction["caveat"] = (
            f"the codebooks were trained on {trained} items ({trained / k:.1f} per code), a build on "
            f"{n_total} items would train on {min(n_total, 256 * k)}: predictions from so few items per code "
            "underestimate collisions; give a larger sample"
        )
    sp.seconds = time.perf_counter() - t0
    return sp


def _recommend(plans: list[ShapePlan], max_collision_rate: float) -> tuple[ShapePlan | None, str]:
    """The smallest vocabulary predicted to stay at or below the collision budget, else the
    candidate predicted to collide least."""
    ok = [s for s in plans if not s.skipped]
    if not ok:
        return None, ""
    order = sorted(ok, key=lambda s: (s.levels * s.codes_per_level, s.levels))
    fits = [s for s in order if s.prediction["collision_rate"] <= max_collision_rate]
    if fits:
        return fits[0], f"the smallest vocabulary predicted to keep colliding items at or below {max_collision_rate:.0%}"
    best = min(ok, key=lambda s: (s.prediction["collision_rate"], s.levels * s.codes_per_level))
    return best, f"no candidate stays at or below {max_collision_rate:.0%}; the one predicted to collide least"


def _gpu() -> bool:
    from ._kmeans import faiss_num_gpus

    return faiss_num_gpus() > 0


def warn_if_crowded(sample_codes: np.ndarray, n_total: int, sizes: Sequence[int], *, threshold: float = 0.5, seed: int = 0) -> dict[str, Any] | None:
    """The build's early warning: predicted collisions of the whole catalogue from the codes of
    the training sample (free: the build has them); logs a WARNING when at least
    ``threshold`` of the items are predicted to share a SID. Returns the prediction."""
    if len(sample_codes) < 2:
        return None
    pred = predict_collisions(sample_codes, n_total, seed=seed)
    shape = "x".join(str(k) for k in sizes) if len(set(sizes)) > 1 else f"{len(sizes)}x{sizes[0]}"
    if pred["collision_rate"] >= threshold:
        logger.warning(
            "codebook shape %s is predicted to give %.0f%% of %d items a shared SID (largest bucket ~%d); "
            "`tokenizer-kit plan` compares shapes",
            shape, 100 * pred["collision_rate"], n_total, pred["largest_bucket"],
        )
    return pred
