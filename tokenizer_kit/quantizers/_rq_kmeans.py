"""RQ-Kmeans (OneRec, arXiv 2506.13695 sec. 2.1.2, eq. 5-8).

``R(1) = x``; for each level l: ``C(l) = KMeans(R(l), K_l)``, ``s_l = argmin_k ||R(l) - c_k||``,
``R(l+1) = R(l) - c_{s_l}``.

Balanced mode keeps cluster sizes even *inside* the Lloyd iterations (size-constrained
k-means by dual prices): each code k carries a price ``p_k`` and items take
``argmin_k ||r - c_k||^2 + p_k``. Prices rise on over-full codes and fall on empty ones until
sizes are even; centroids are then the means of the balanced clusters. The prices are
saved with the codebooks, so encoding new items uses the same rule as training.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._config import ValidatedConfig, setting
from .._progress import Progress, as_progress
from ..errors import TokenizerKitError
from ._base import QuantizerBase, register_quantizer, suggest_codebook_size
from ._encode import BLOCK_ROWS, TorchEncoder, greedy_encode, greedy_level, row_sq_norms, run_blocks
from ._exact import CodeTable, exact_scores, exact_top, resolve_near_ties
from ._kmeans import KMeansConfig, cluster_sums, kmeans_device, resolve_device, train_kmeans

__all__ = ["RQKMeansConfig", "RQKMeans", "parse_codebook_sizes", "suggest_codebook_size"]

logger = logging.getLogger(__name__)


def parse_codebook_sizes(spec: str | int | list[int], levels: int | None = None) -> list[int]:
    """``"256"`` with ``levels=3`` -> [256, 256, 256]; ``"8192,8192,8192"`` -> as given."""
    if isinstance(spec, int):
        sizes = [spec]
    elif isinstance(spec, str):
        try:
            sizes = [int(s) for s in spec.replace(" ", "").split(",") if s]
        except ValueError:
            raise TokenizerKitError(
                f"codebook size {spec!r} is not an integer or comma-separated integers (e.g. 256 or 8192,8192,8192)"
            ) from None
    else:
        sizes = [int(s) for s in spec]
    if len(sizes) == 1 and levels is not None:
        sizes = sizes * levels
    if levels is not None and len(sizes) != levels:
        raise TokenizerKitError(f"{len(sizes)} codebook sizes given for {levels} levels; give one size or one per level")
    return sizes


@dataclass
class RQKMeansConfig(ValidatedConfig):
    label: ClassVar[str] = "RQ-Kmeans"

    codebook_sizes: list[int] = setting(help="Codes per level (L_t levels of N_t codes).", default_factory=lambda: [256, 256, 256],
                                        bounds=(2, None), nonempty=True)
    niter: int = setting(20, help="k-means iterations per level.", bounds=(1, None))
    seed: int = setting(1234, help="Random seed (same input + seed -> same SIDs).", bounds=(0, 2**30))
    max_points_per_centroid: int = setting(256, help="k-means training sample cap per centroid.", bounds=(1, None))
    init: str = setting("random", help="Centroid init: random (FAISS's sampling) or kmeans++ (lower error, more collisions on Office).",
                        choices=("random", "kmeans++"))
    balanced: bool = setting(False, help="Size-balanced k-means per level + distinct last-level codes per prefix "
                             "(no collisions; retrieved worse downstream on Office).")
    balance_iters: int = setting(5, help="Balanced mode: balancing rounds per level.", bounds=(0, None))
    balance_cap: float = setting(1.1, help="Balanced mode: the largest code should hold at most this multiple of n/K "
                                 "items; the build warns for each level that misses it.", bounds=(1.0, 1e6))
    # balanced mode only: the training items of each (level 1..L-1) prefix get distinct
    # last-level codes (one assignment problem per colliding prefix)
    distinct_last_level: bool = setting(True, help="Balanced mode: the items of each prefix get distinct last-level codes.")
    beam_size: int = setting(1, help="Beam width for encoding (1 = greedy).", bounds=(1, None))
    # the same name as RQ-VAE's (whose batch_size is the training batch); saved configs say batch_size
    encode_batch_size: int = setting(16384, help="Items per encoding batch.", bounds=(1, None), aliases=("batch_size",))
    device: str = setting("auto", help="auto, cpu or cuda (k-means GEMMs on the GPU when one is available).", choices=("auto", "cpu", "cuda"))


def _snap_pow2(v: float) -> float:
    """``v`` rounded to a power of two: a step size that last-bit differences cannot move."""
    return float(2.0 ** round(math.log2(v))) if v > 0 else 1e-12


def _balanced_prices(
    g0: np.ndarray, r: np.ndarray, cents: np.ndarray, target: float, prices: np.ndarray, iters: int = 60, tol: float = 0.25
) -> np.ndarray:
    """Dual prices ``p`` (K,) so that ``argmin_k ||r - c_k||^2 + p_k`` gives even cluster sizes.

    ``g0`` (n, K) is ``-2 r.c`` (the GEMM of the rows ``r`` (n, d) with ``cents``). A
    sub-gradient ascent on the dual of the size-constrained assignment LP; the step starts at
    the median gap between an item's best and second-best code (snapped to a power of two)
    and shrinks, so it settles instead of oscillating. Every count comes from the exact
    argmin (``_exact``) and every price update is elementwise, so the prices are the same on
    every machine.
    """
    n, k = g0.shape
    cn = (cents * cents).sum(1)
    part = np.partition(g0 + cn[None, :], 1, axis=1)
    gap = _snap_pow2(float(np.median(part[:, 1] - part[:, 0])))
    del part
    p = prices.astype(np.float32, copy=True)
    lo, hi = math.floor(target * (1 - tol)), math.ceil(target * (1 + tol))
    work = np.empty_like(g0)
    best = None
    best_dev = math.inf
    for t in range(iters):
        table = CodeTable.make(cents, p)
        np.add(g0, table.offset[None, :], out=work)
        ids = work.argmin(1)
        resolve_near_ties(work, r, ids, table)
        counts = np.bincount(ids, minlength=k).astype(np.float64)
        dev = np.abs(counts - target).sum()
        if dev < best_dev:
            best_dev, best = dev, p.copy()
        if counts.max() <= hi and counts.min() >= lo:
            break
        step = gap * 2.0 / math.sqrt(t + 1.0)
        p += (step * (counts - target) / max(target, 1.0)).astype(np.float32)
        p -= p.mean()
    return best if best is not None else p


# the Hungarian method is O(n^3): beyond ~1M cost entries (a prefix of ~1,000 items at K = 256)
# the distinct-last-level step assigns a group greedily under the same capacities
EXACT_ASSIGNMENT_CELLS = 1 << 20


def _greedy_capacity_assignment(cost: np.ndarray, cap: int) -> np.ndarray:
    """Codes (m,) for ``cost`` (m, K) with at most ``cap`` items per code: items by decreasing
    regret (second-best minus best cost; ties by row), each to its cheapest code with room."""
    m, k = cost.shape
    pref = np.argsort(cost, axis=1, kind="stable")  # [m, K]
    rows = np.arange(m)
    best = cost[rows, pref[:, 0]]
    regret = cost[rows, pref[:, 1]] - best if k > 1 else np.zeros(m, cost.dtype)
    load = np.zeros(k, np.int64)
    out = np.empty(m, np.int64)
    for i in np.lexsort((rows, -regret)).tolist():
        for code in pref[i].tolist():
            if load[code] < cap:
                load[code] += 1
                out[i] = code
                break
    return out


def _cluster_means(x: np.ndarray, assign: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Means of ``x`` (n, d) per cluster (float64 sums in a fixed order); an empty cluster keeps
    its ``old`` centroid."""
    sums, counts = cluster_sums(x, assign, old.shape[0])
    out = old.copy()
    filled = np.flatnonzero(counts)
    out[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    return out


@register_quantizer
class RQKMeans(QuantizerBase):
    """Residual k-means with FAISS. ``fit(x)``, ``encode(x) -> (n, L)``, ``decode(codes)``."""

    method: ClassVar[str] = "rq-kmeans"
    config_class = RQKMeansConfig
    describe = "RQ-Kmeans codebook"

    def __init__(self, config: RQKMeansConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.codebooks: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        self._tables: list[CodeTable] = []  # per level: the codes prepared for encoding

    @property
    def is_fitted(self) -> bool:
        return len(self.codebooks) == self.levels

    # ---- training ---------------------------------------------------------------------
    @property
    def sample_cap(self) -> int:
        """Most training points any level uses: ``max_points_per_centroid x max(K)``."""
        return self.config.max_points_per_centroid * max(self.config.codebook_sizes)

    def sample_rows(self, n: int) -> np.ndarray:
        """Rows (sorted) of the training sample for an input of ``n`` items: all rows when
        ``n <= sample_cap``, else ``sample_cap`` rows drawn uniformly without replacement.
        Depends only on ``n`` and the seed, so every reader of the input draws the same sample."""
        cap = self.sample_cap
        if n <= cap:
            return np.arange(n, dtype=np.int64)
        rng = np.random.default_rng([self.config.seed, 0x5A3D])
        return np.sort(rng.choice(n, cap, replace=False)).astype(np.int64)

    def fit(self, x: np.ndarray, *, progress: Progress | None = None) -> "RQKMeans":
        """Train the codebooks on ``x`` (n, d) and keep every item's codes in ``fit_codes_``
        (n, L) (greedy, as in the paper).

        The algorithm is the one the streaming build runs on any catalogue: each level is
        trained on one sample of ``x`` (``sample_rows``; all of ``x`` when it has at most
        ``max_points_per_centroid x K`` items), later levels on the sample's residuals; then
        every item is encoded; in balanced mode each prefix's items get distinct last-level
        codes (``distinct_last_level``). ``progress`` gets one task over the levels.
        """
        x = self._check_fit_input(x)
        n, d = x.shape
        rows = self.sample_rows(n)
        whole = len(rows) == n
        sample = np.array(x, dtype=np.float32, order="C", copy=True) if whole else np.ascontiguousarray(x[rows], dtype=np.float32)
        t_start = time.perf_counter()
        sample_codes = self.fit_sample(sample, n_total=n, progress=progress)
        codes = sample_codes if whole else self.encode(x, beam_size=1)
        moved = 0
        if self._joint_last_level:
            groups = self.distinct_groups(codes)
            if groups:
                r_last = lambda g: self.last_residuals(np.ascontiguousarray(x[g], dtype=np.float32), codes[g])  # noqa: E731
                moved = self.solve_distinct(groups, r_last, codes)
        self.fit_codes_ = codes
        self._summary.update(
            {
                "n_items": int(n),
                "fit_seconds": time.perf_counter() - t_start,
                "distinct_last_level_moved": int(moved),
            }
        )
        logger.info("RQ-Kmeans fit on %d x %d in %.2fs", n, d, self._summary["fit_seconds"])
        return self

    train = fit

    @property
    def _joint_last_level(self) -> bool:
        cfg = self.config
        return bool(cfg.balanced and cfg.distinct_last_level and self.levels > 1)

    def fit_sample(self, sample: np.ndarray, *, n_total: int | None = None, progress: Progress | None = None) -> np.ndarray:
        """Train every level on ``sample`` (m, d) float32 (overwritten with its final residuals);
        returns the sample's greedy codes (m, L). ``progress``: one task advanced per level
        (with the residual's mean squared norm)."""
        m, d = sample.shape
        cfg = self.config
        kmax = max(cfg.codebook_sizes)
        if m < kmax:
            self._check_fit_input(sample)
        if m < 39 * kmax:
            logger.info("%d items for %d codes (%.1f per code); FAISS suggests >= 39 per code", m, kmax, m / kmax)
        device = kmeans_device(cfg.device)
        self._dim = d
        t_start = time.perf_counter()
        residual = sample
        codes = np.empty((m, self.levels), dtype=np.int64)
        self.codebooks, self.biases, self._tables = [], [], []
        level_times = []
        rng = np.random.default_rng(cfg.seed)
        with as_progress(progress).task("k-means levels", total=self.levels, unit="level") as task:
            for level, k in enumerate(cfg.codebook_sizes):
                t0 = time.perf_counter()
                kcfg = KMeansConfig(
                    niter=cfg.niter, seed=cfg.seed + level, max_points_per_centroid=cfg.max_points_per_centroid, init=cfg.init
                )
                cents = train_kmeans(residual, k, kcfg, device=device)
                bias = np.zeros(k, dtype=np.float32)
                if cfg.balanced:
                    cents, bias = self._balance_level(residual, cents, rng)
                self.codebooks.append(cents)
                self.biases.append(bias)
                self._refresh_cache()
                codes[:, level] = self._assign_level(residual, level)
                level_times.append(time.perf_counter() - t0)
                task.advance(1, residual_mse=float(np.mean(residual[: 1 << 16].astype(np.float64) ** 2)))
        self._summary = {
            "n_train": int(m),
            "n_items": int(n_total if n_total is not None else m),
            "dim": int(d),
            "device": device,
            "fit_seconds": time.perf_counter() - t_start,
            "level_seconds": level_times,
            "fit_mse": float(np.mean(residual.astype(np.float64) ** 2)),
            "distinct_last_level_moved": 0,
        }
        return codes

    def _balance_level(self, residual: np.ndarray, cents: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
        """Size-balanced Lloyd iterations from the k-means centroids; returns (centroids, prices)."""
        cfg = self.config
        k, d = cents.shape
        n = residual.shape[0]
        cap = cfg.max_points_per_centroid * k
        sample = residual if n <= cap else residual[np.sort(rng.choice(n, cap, replace=False))]
        ns = sample.shape[0]
        target = ns / k
        prices = np.zeros(k, dtype=np.float32)
        for _ in range(max(cfg.balance_iters, 1)):
            g0 = sample @ (-2.0 * cents.T).astype(np.float32)  # [ns, K]
            prices = _balanced_prices(g0, sample, cents, target, prices)
            table = CodeTable.make(cents, prices)
            g0 += table.offset[None, :]
            assign = g0.argmin(1)
            resolve_near_ties(g0, sample, assign, table)
            cents = _cluster_means(sample, assign, cents)
        # final prices for the final centroids
        g0 = sample @ (-2.0 * cents.T).astype(np.float32)
        prices = _balanced_prices(g0, sample, cents, target, prices)
        return np.ascontiguousarray(cents, dtype=np.float32), prices.astype(np.float32)

    def balance_limit(self, n: int, k: int) -> int:
        """Most items one code of ``k`` may hold among ``n`` in balanced mode:
        ``balance_cap x n / k``, never below ``ceil(n / k)``."""
        return max(-(-n // k), int(math.floor(self.config.balance_cap * n / k)))

    def balance_misses(self, counts: list[np.ndarray]) -> list[dict[str, Any]]:
        """Levels whose largest code holds more than ``balance_limit`` of the items counted in
        ``counts`` (one (K,) array per level): level, largest, limit, ratio to n/K."""
        out = []
        for level, c in enumerate(counts):
            c = np.asarray(c)
            n, k = int(c.sum()), len(c)
            lim = self.balance_limit(n, k)
            if n and int(c.max()) > lim:
                out.append({"level": level, "largest": int(c.max()), "limit": lim, "ratio": round(float(c.max()) * k / n, 3)})
        return out

    def warn_balance(self, counts: list[np.ndarray]) -> list[dict[str, Any]]:
        """Log which balanced levels missed their limit, by how much, and what fixes it."""
        misses = self.balance_misses(counts) if self.config.balanced else []
        for m in misses:
            fix = ("raise balance_iters (now %d) or balance_cap; clusters far apart (more than K natural groups, "
                   "or groups of very unequal size) cannot be split evenly without a large reconstruction cost"
                   % self.config.balance_iters)
            if m["level"] == self.levels - 1 and self._joint_last_level:
                fix = "set distinct_last_level = false (distinct codes per prefix override the cap), or " + fix
            logger.warning(
                "balanced build: level %d's largest code holds %d items, %.2fx n/K (limit %d = %.2fx); %s",
                m["level"] + 1, m["largest"], m["ratio"], m["limit"], self.config.balance_cap, fix,
            )
        return misses

    # ---- distinct last level (balanced mode) --------------------------------------------
    @staticmethod
    def distinct_groups(codes: np.ndarray) -> list[np.ndarray]:
        """Rows of each prefix (levels 0..L-2) whose items share a last-level code, in prefix
        order, rows ascending within a group."""
        order = np.lexsort(codes[:, ::-1].T[1:])  # sort rows by prefix (stable: rows ascending)
        pre = codes[order, :-1]
        bounds = np.flatnonzero((pre[1:] != pre[:-1]).any(1)) + 1
        out = []
        for g in np.split(order, bounds):
            if len(g) < 2:
                continue
            if len(np.unique(codes[g, -1])) == len(g):
                continue
            out.append(g)
        return out

    def last_residuals(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Residuals before the last level, ``x - sum_{l < L-1} c_l`` (m, d), subtracted level by
        level in float32 as the encoder does."""
        r = np.array(x, dtype=np.float32, order="C", copy=True)
        for level in range(self.levels - 1):
            r -= self.codebooks[level][codes[:, level]]
        return r

    def solve_distinct(self, groups: list[np.ndarray], r_last, codes: np.ndarray) -> int:
        """Give the items of each group (one prefix) distinct last-level codes; returns how
        many items moved. ``r_last(rows) -> (m, d)`` gives the residuals of a group's rows.

        Per group a min-cost assignment (Hungarian, scipy) of its m items to the K last-level
        codes under ``||r - c_k||^2 + p_k``; with m > K each code takes ceil(m / K) items at
        most. The Hungarian method costs O(m^2 K ceil(m/K)); a group whose cost matrix would
        exceed ``EXACT_ASSIGNMENT_CELLS`` entries (m > ~1,000 items at K = 256) is assigned by
        a greedy under the same capacities instead: items in order of regret (second-best
        minus best cost), each to its cheapest code with room left. Changes ``codes[:, -1]``
        in place.
        """
        from scipy.optimize import linear_sum_assignment

        k = self.codebook_sizes[-1]
        table = self._tables[-1]
        moved = 0
        for g in groups:
            last = codes[g, -1]
            rg = np.ascontiguousarray(r_last(g), dtype=np.float32)
            rows = np.repeat(np.arange(len(g)), k)
            # exact costs (``_exact``): the assignment must not depend on the GEMM's kernel
            cost = exact_scores(rg, rows, np.tile(np.arange(k), len(g)), table).reshape(len(g), k)  # [m, K]
            reps = -(-len(g) // k)
            if len(g) * k * reps > EXACT_ASSIGNMENT_CELLS:
                new = _greedy_capacity_assignment(cost, reps)
            else:
                if reps > 1:
                    cost = np.tile(cost, (1, reps))
                rows, cols = linear_sum_assignment(cost)
                new = np.empty(len(g), dtype=np.int64)
                new[rows] = cols % k
            moved += int((new != last).sum())
            codes[g, -1] = new
        return moved

    def _assign_level(self, residual: np.ndarray, level: int) -> np.ndarray:
        """Greedy codes of one level for ``residual`` (n, d); subtracts the chosen centroids in
        place. Same blocks as ``encode``, so a level-by-level pass gives the same codes."""
        out = np.empty(residual.shape[0], dtype=np.int64)
        table = self._tables[level]

        def one(s: int, e: int) -> None:
            out[s:e] = greedy_level(residual[s:e], table)

        run_blocks(one, residual.shape[0])
        return out

    # ---- encode / decode --------------------------------------------------------------
    def encode(
        self,
        x: np.ndarray,
        *,
        batch_size: int | None = None,
        beam_size: int | None = None,
        device: str | None = None,
        threads: int | None = None,
        sq_norms: np.ndarray | None = None,
    ) -> np.ndarray:
        """Codes (n, L) int64 for ``x`` (n, d); streams ``x`` in batches (memmaps welcome).

        Greedy codes run on the CPU in cache-sized blocks on every core (see ``_encode``), or
        with torch on every GPU when ``device`` (default: the config's) resolves to ``cuda``
        and torch sees one. Beam search runs on the CPU.

        ``sq_norms`` (n, 2) float64, if given, receives each row's ``||x||^2`` and
        ``||x - decode(codes)||^2`` (:meth:`residual_sq_norms`; the greedy CPU path computes
        them inside its blocks, at no extra pass over ``x``).
        """
        self._require_fitted()
        x = self._check_input(x, "encode")
        n = x.shape[0]
        bs = batch_size or self.config.encode_batch_size
        beam = beam_size or self.config.beam_size
        if sq_norms is not None and sq_norms.shape != (n, 2):
            raise InputError(f"sq_norms must have shape ({n}, 2), got {sq_norms.shape}")
        if beam == 1 and self._use_torch(device or self.config.device):
            out = self.torch_encoder().encode(x, batch_size=max(bs, 65536))
            return self._fill_sq_norms(x, out, sq_norms, bs)
        out = np.empty((n, self.levels), dtype=np.int64)
        if beam == 1:
            # batches are whole multiples of the block, so codes do not depend on batch_size
            step = max(BLOCK_ROWS, (bs // BLOCK_ROWS) * BLOCK_ROWS)
            for s in range(0, n, step):
                xb = np.ascontiguousarray(x[s : s + step], dtype=np.float32)
                greedy_encode(xb, self._tables, threads=threads, out=out[s : s + step],
                              sq=None if sq_norms is None else sq_norms[s : s + step])
            return out
        step = max(1, bs // beam)
        for s in range(0, n, step):
            xb = np.ascontiguousarray(x[s : s + step], dtype=np.float32)
            out[s : s + step] = self._encode_beam(xb, beam)
        return self._fill_sq_norms(x, out, sq_norms, bs)

    def _fill_sq_norms(self, x: np.ndarray, codes: np.ndarray, sq_norms: np.ndarray | None, bs: int) -> np.ndarray:
        if sq_norms is not None:
            for s in range(0, len(codes), bs):
                sq_norms[s : s + bs] = self.residual_sq_norms(x[s : s + bs], codes[s : s + bs])
        return codes

    def residual_sq_norms(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """(n, 2) float64: each row's ``||x||^2`` and squared residual ``||x - decode(codes)||^2``,
        the residual subtracted level by level in float32 (as the greedy encode does)."""
        xb = np.ascontiguousarray(x, dtype=np.float32)
        codes = self._check_codes(codes)
        r = xb.copy()
        for level, c in enumerate(self.codebooks):
            r -= c[codes[:, level]]
        return np.stack([row_sq_norms(xb), row_sq_norms(r)], 1)

    @staticmethod
    def _use_torch(device: str) -> bool:
        """Greedy encode on torch when ``device`` resolves to cuda and torch itself sees a GPU."""
        if resolve_device(device) != "cuda":
            return False
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return False
        return bool(torch.cuda.is_available())

    def torch_encoder(self, devices: list[str] | None = None) -> TorchEncoder:
        """A :class:`TorchEncoder` over this quantizer's codebooks (every GPU by default; kept
        for the next call, so a stream of batches copies the codebooks to the devices once)."""
        self._require_fitted()
        if devices is not None:
            return TorchEncoder(self._tables, devices)
        if getattr(self, "_torch_enc", None) is None:
            self._torch_enc = TorchEncoder(self._tables, None)
        return self._torch_enc

    def _refresh_cache(self) -> None:
        self._torch_enc = None
        self._tables = [CodeTable.make(c, b) for c, b in zip(self.codebooks, self.biases)]

    def _encode_greedy(self, xb: np.ndarray) -> np.ndarray:
        return greedy_encode(np.ascontiguousarray(xb, dtype=np.float32), self._tables)

    def _encode_beam(self, xb: np.ndarray, beam: int) -> np.ndarray:
        """Beam search over levels on ``||x - x^||^2 + sum of prices``; never worse than greedy.

        Each step ranks (beam, code) pairs by exact float64 scores (``_exact.exact_top``), ties
        to the lower beam, then the lower code: the beams are the same on every machine.
        """
        b, d = xb.shape
        r = xb[:, None, :].copy()  # [b, nb, d]
        acc = np.zeros((b, 1), dtype=np.float64)  # accumulated prices per beam
        codes = np.zeros((b, 1, 0), dtype=np.int64)
        for level, table in enumerate(self._tables):
            nb = r.shape[1]
            kk = min(beam, table.size)
            s, ids = exact_top(r.reshape(b * nb, d), table, kk)  # [b*nb, kk] ||r - c||^2 + p
            total = s.reshape(b, nb * kk) + np.repeat(acc, kk, axis=1)
            keep = min(beam, nb * kk)
            # stable sort: equal totals keep (beam, code-rank) order
            sel = np.argsort(total, axis=1, kind="stable")[:, :keep]  # [b, keep]
            parent = sel // kk
            new_code = np.take_along_axis(ids.reshape(b, nb * kk), sel, 1)
            rows = np.arange(b)[:, None]
            r = r[rows, parent] - table.codebook[new_code]
            acc = acc[rows, parent] + table.price[new_code].astype(np.float64)
            codes = np.concatenate([codes[rows, parent], new_code[:, :, None]], axis=2)
        best = codes[:, 0, :]
        # the greedy path is not always inside the beam; keep whichever is better
        greedy = self._encode_greedy(xb)
        g_score = self._objective(xb, greedy)
        b_score = self._objective(xb, best)
        return np.where((g_score < b_score)[:, None], greedy, best)

    def _objective(self, xb: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``||x - decode(codes)||^2 + sum of prices`` (n,) in float64, in a fixed order."""
        err = xb.astype(np.float64) - self.decode(codes)
        np.multiply(err, err, out=err)
        obj = np.add.reduce(err, axis=1)
        for level, bias in enumerate(self.biases):
            if bias.any():
                obj += bias[codes[:, level]]
        return obj

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Sum of the chosen centroids, (n, d) float32."""
        self._require_fitted()
        codes = self._check_codes(codes)
        out = np.zeros((codes.shape[0], self.dim), dtype=np.float32)
        for level, c in enumerate(self.codebooks):
            out += c[codes[:, level]]
        return out

    # ---- serialisation ----------------------------------------------------------------
    def state_tensors(self) -> dict[str, np.ndarray]:
        out = {}
        for level, (c, b) in enumerate(zip(self.codebooks, self.biases)):
            out[f"codebook_{level}"] = c
            out[f"bias_{level}"] = b
        return out

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> "RQKMeans":
        config = dict(config)
        dim = config.pop("dim", None)
        q = cls(RQKMeansConfig.from_dict(config))
        for level, k in enumerate(q.codebook_sizes):
            key = f"codebook_{level}"
            if key not in tensors:
                raise TokenizerKitError(f"missing tensor {key!r} in the RQ-Kmeans weights")
            c = np.ascontiguousarray(tensors[key], dtype=np.float32)
            if c.ndim != 2 or c.shape[0] != k or (dim is not None and c.shape[1] != dim):
                raise TokenizerKitError(f"tensor {key!r} has shape {c.shape}, expected ({k}, {dim})")
            b = np.ascontiguousarray(tensors.get(f"bias_{level}", np.zeros(k, np.float32)), dtype=np.float32)
            q.codebooks.append(c)
            q.biases.append(b)
        expected = {f"codebook_{i}" for i in range(q.levels)} | {f"bias_{i}" for i in range(q.levels)}
        unexpected = sorted(set(tensors) - expected)
        if unexpected:
            raise TokenizerKitError(f"unexpected tensors {unexpected} in the RQ-Kmeans weights")
        q._dim = int(q.codebooks[0].shape[1])
        q._refresh_cache()
        return q
