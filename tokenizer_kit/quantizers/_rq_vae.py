"""RQ-VAE (Lee et al. 2022; TIGER, Rajput et al. 2023): MLP encoder -> residual VQ -> MLP decoder.

Training minimises (TIGER eq. 1, VQ-VAE eq. 3 per level)::

    L = ||x - D(z_q)||^2 + sum_l ||sg(r_l) - e_l||^2 + beta * ||r_l - sg(e_l)||^2

with ``z = E(x)``, ``r_1 = z``, ``e_l = C_l[argmin_k ||r_l - c_k||]``, ``r_{l+1} = r_l - e_l``
and the straight-through estimator ``z_q = z + sg(sum_l e_l - z)``.

What keeps it from collapsing (the common failure: one code for every item, 40-90% dead
codes): inputs are standardised, every level is initialised by k-means on the residuals of
an early sample (``train_kmeans`` from ``_kmeans``), and codes left unused for an epoch (or
``restart_interval`` steps) are re-seeded from current residuals.

Codes are a contract (CONVENTIONS 12a), so every decision that could depend on the machine
is made in a way that does not:

- **Encode** (``encode``, ``latents``, the k-means init's latents): the encoder runs in
  numpy with every layer output *correctly rounded* to fp32, ``fl32(exact(W h + b))`` and
  ``fl32(silu(h))``: a float64 GEMM (any kernel, any thread count: its error is bounded,
  Higham eq. 3.5) and, for the rare element whose error interval holds an fp32 rounding
  boundary, an exact recomputation (``math.fsum`` of the exact fp32 products; ``decimal``
  for the exponential). The latents are then a function of the weights and the item alone,
  and the codes come from ``greedy_encode`` (near-ties decided exactly, ``_exact``): the
  same on every CPU, BLAS kernel, thread count and batch size.
- **Training on the CPU** runs torch on one intra-op thread (set for the call, restored
  after): torch's CPU GEMMs (MKL) and reductions split work by thread count, and with two
  threads the same seed gave other weights from run to run. The VQ assignment inside
  training is the exact rule too, and the restart jitter's scale is a fixed-order float64
  sum. Measured on an AMD EPYC (AVX-512): the same weights under every ``OPENBLAS_CORETYPE``
  (Prescott to SkylakeX), 1, 2 and 4 threads, ``MKL_ENABLE_INSTRUCTIONS=AVX2``, ``MKL_CBWR=AVX2``
  and ``ATEN_CPU_CAPABILITY=avx2``. What one thread does not fix: torch's fp32 GEMMs take
  the path MKL and ATen pick for the CPU, so ``MKL_CBWR=COMPATIBLE`` or
  ``ATEN_CPU_CAPABILITY=default`` (a CPU without AVX2, or an Intel part on which MKL takes
  its AVX-512 kernels) trains to other weights from the first step (the same Office codes
  after 3 epochs, other codes after 30). ``MKL_CBWR=AVX2`` makes MKL take one path on
  every CPU with AVX2.
- **On CUDA** the assignment is decided exactly as on the CPU, but cuBLAS/cuDNN training
  is not claimed to be bit-reproducible.

``decode`` runs the decoder in torch, so reconstructions live in input space (they are not
part of the contract).
"""

from __future__ import annotations

import copy
import decimal
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from .._progress import Progress, as_progress
from ..errors import TokenizerKitError
from ._base import QuantizerBase, register_quantizer
from ._encode import greedy_encode, single_thread_blas, torch_exact_ids
from ._exact import CodeTable, exact_argmin
from ._kmeans import KMeansConfig, train_kmeans
from ._rq_vae_config import RQVAEConfig

try:
    import torch
    from torch import nn
except ImportError as e:  # pragma: no cover - torch is a hard dependency of the package
    raise ImportError("RQ-VAE needs torch; pip install torch") from e

from .._torch_utils import cpu_threads, decay_groups, resolve_device, warmup_decay

__all__ = ["RQVAEConfig", "RQVAE", "RQVAEModel"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


# ---- machine-independent arithmetic ------------------------------------------------------

U64 = 2.0**-53  # unit roundoff of float64


def _round_f32(y64: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fp32 roundings of float64 values ``y64`` known to within ``err`` of the exact values.

    Returns (y32, ambiguous). Where the interval ``y64 +- e`` (``e`` = 2 err, plus 4 ulp of
    float64 for the rounding of the ends and of a correctly rounded float64 recomputation)
    holds no fp32 rounding boundary, every value in it, the exact one included, rounds to the
    same fp32 number: that is ``y32``. Where it does (``ambiguous``), the caller recomputes.
    """
    e = 2.0 * err + np.abs(y64) * (4.0 * U64)
    lo = (y64 - e).astype(np.float32)
    hi = (y64 + e).astype(np.float32)
    return lo, (lo != hi) & ~np.isnan(y64)


def exact_linear(h: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``fl32(h @ w.T + b)`` (rows, m) from fp32 ``h`` (rows, n), ``w`` (m, n), ``b`` (m,).

    Products of fp32 numbers are exact in float64, so the float64 GEMM (any kernel, any
    summation order) errs by at most ``gamma_{n+1} (||h|| ||w_k|| + |b_k|)``; where that
    interval holds an fp32 rounding boundary (about one element in 10^6) the element is
    recomputed as the correctly rounded float64 sum of its exact products (``math.fsum``). The
    result depends on the inputs alone.
    """
    h64 = h.astype(np.float64)
    w64 = w.astype(np.float64)
    b64 = b.astype(np.float64)
    y64 = h64 @ w64.T  # [rows, m]
    y64 += b64
    n = h.shape[1]
    g = (n + 2) * U64 / (1.0 - (n + 2) * U64) * (1.0 + 1e-9)  # the slack covers the norms' own rounding
    nh = np.sqrt(np.add.reduce(h64 * h64, axis=1))
    nw = np.sqrt(np.add.reduce(w64 * w64, axis=1))
    err = nh[:, None] * nw[None, :]
    err += np.abs(b64)
    err *= g
    y, amb = _round_f32(y64, err)
    for i, k in zip(*np.nonzero(amb)):
        y[i, k] = np.float32(math.fsum([*(h64[i] * w64[k]).tolist(), float(b64[k])]))
    return y


_SILU_CTX = decimal.Context(prec=50)


def _silu_exactish(v: float) -> np.float32:
    """fp32 of ``silu(v)`` through a 50-digit ``decimal`` (software, the same everywhere)."""
    if v > 200.0:  # silu(v) = v (1 - e^-v ...): rounds to v itself
        return np.float32(v)
    if v < -200.0:  # |silu(v)| < 1e-80, below fp32's smallest subnormal
        return np.float32(-0.0)
    d = decimal.Decimal(v)
    s = _SILU_CTX.divide(d, _SILU_CTX.add(1, _SILU_CTX.exp(-d)))
    return np.float32(float(s))


def exact_silu(h: np.ndarray) -> np.ndarray:
    """``fl32(silu(h))`` for fp32 ``h``: float64 ``h / (1 + exp(-h))`` (relative error a few
    ulp of float64 on any libm; 64 allowed), and where that does not settle the fp32 rounding
    (about one element in 10^7), the value from ``decimal``."""
    h64 = h.astype(np.float64)
    with np.errstate(over="ignore"):
        s64 = h64 / (1.0 + np.exp(-h64))
    y, amb = _round_f32(s64, np.abs(s64) * (64.0 * U64))
    for idx in zip(*np.nonzero(amb)):
        y[idx] = _silu_exactish(float(h[idx]))
    return y


def exact_mlp(h: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The ``_mlp`` forward (Linear, SiLU, ..., Linear) with every output correctly rounded."""
    for i, (w, b) in enumerate(layers):
        h = exact_linear(h, w, b)
        if i < len(layers) - 1:
            h = exact_silu(h)
    return h


def _linear_params(seq: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (m.weight.detach().float().cpu().numpy(), m.bias.detach().float().cpu().numpy())
        for m in seq
        if isinstance(m, nn.Linear)
    ]


def exact_latents(model: "RQVAEModel", x: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
    """Encoder latents (n, m) fp32 of ``x`` (n, d), each a function of the weights and its own
    row alone (see :func:`exact_linear`): the same on every machine and batch layout."""
    layers = _linear_params(model.encoder)
    mean = model.mean.detach().float().cpu().numpy()
    scale = np.float32(model.scale.detach().float().cpu().item())
    out = np.empty((x.shape[0], layers[-1][0].shape[0]), dtype=np.float32)
    for s in range(0, x.shape[0], chunk):
        xs = np.subtract(np.asarray(x[s : s + chunk], dtype=np.float32), mean)  # as torch: one rounding each
        xs /= scale
        out[s : s + chunk] = exact_mlp(xs, layers)
    return out


def exact_codes(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``argmin_k ||r - c_k||^2`` (b,) int64 on ``r``'s device, decided by the exact rule of
    ``_exact`` (the same whatever GEMM kernel, thread count or device; ties to the lowest)."""
    table = CodeTable.make(c.detach().float().cpu().numpy())
    if r.device.type == "cpu":
        return torch.from_numpy(exact_argmin(np.ascontiguousarray(r.detach().float().numpy()), table))
    # CUDA: the GEMM on the device (no TF32: the bound is for fp32 products), near-ties on the host
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        rd = r.detach().float()
        dist = torch.addmm(torch.as_tensor(table.offset, device=r.device), rd, torch.as_tensor(table.neg2ct, device=r.device))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return torch_exact_ids(dist, rd, table)


def _std64(r: torch.Tensor) -> float:
    """Sample standard deviation of every element of ``r``, in float64 with numpy's fixed
    pairwise order (torch's CPU reductions split by thread count and vector width)."""
    a = r.detach().float().cpu().numpy().astype(np.float64).ravel()
    if a.size < 2:
        return 0.0
    a -= np.add.reduce(a) / a.size
    return math.sqrt(float(np.add.reduce(a * a)) / (a.size - 1))


# ---- the network ------------------------------------------------------------------------


def _mlp(*, dims: list[int]) -> nn.Sequential:
    """Linear layers ``dims[0] -> ... -> dims[-1]`` with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class ResidualVQ(nn.Module):
    """L codebooks ``(K_l, m)``; greedy residual assignment with straight-through gradients."""

    def __init__(self, *, codebook_sizes: list[int], dim: int):
        super().__init__()
        self.codebooks = nn.ParameterList([nn.Parameter(torch.randn(k, dim) * 0.1) for k in codebook_sizes])

    def forward(self, z: torch.Tensor, *, beta: float):
        """``z`` (b, m) fp32 -> (z_q straight-through (b, m), codes (b, L), vq loss, residuals [L x (b, m)])."""
        r = z
        zq = torch.zeros_like(z)
        codes, residuals = [], []
        vq_loss = z.new_zeros(())
        for c in self.codebooks:
            rd = r.detach()
            residuals.append(rd)
            with torch.no_grad():
                idx = exact_codes(rd, c)  # [b]; the same on every machine for the same rd
            e = c[idx]  # [b, m]
            # codebook term moves e towards sg(r); commitment term moves the encoder towards sg(e)
            vq_loss = vq_loss + (e - rd).pow(2).mean() + beta * (r - e.detach()).pow(2).mean()
            r = r - e.detach()
            zq = zq + e
            codes.append(idx)
        zq_st = z + (zq - z).detach()
        # the codebook gradient reaches e through vq_loss only; the decoder's through z_q_st
        return zq_st, torch.stack(codes, 1), vq_loss, residuals


class RQVAEModel(nn.Module):
    """Encoder (d -> hidden -> m), residual VQ, decoder (m -> reversed hidden -> d).

    ``mean`` (d,) and ``scale`` () standardise inputs; both are buffers saved with the weights.
    """

    def __init__(self, *, dim: int, latent_dim: int, hidden_dims: list[int], codebook_sizes: list[int]):
        super().__init__()
        self.encoder = _mlp(dims=[dim, *hidden_dims, latent_dim])
        self.decoder = _mlp(dims=[latent_dim, *reversed(hidden_dims), dim])
        self.rvq = ResidualVQ(codebook_sizes=codebook_sizes, dim=latent_dim)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def unstandardize(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.mean


# ---- the quantizer ----------------------------------------------------------------------


@dataclass(kw_only=True)
class _FitRun:
    """What one :meth:`RQVAE.fit` holds between its steps (built by ``_setup``)."""

    device: torch.device
    amp: bool  # bf16 autocast of encoder and decoder (CUDA only)
    train_idx: np.ndarray  # sorted training rows
    val_idx: np.ndarray  # sorted validation rows
    batch_size: int
    steps_per_epoch: int
    model: RQVAEModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    gen: torch.Generator  # draws of the dead-code restarts
    usage: list  # per level, (K,) code counts since the last restart check
    state: dict  # epoch, step, best_val, best_epoch, bad_epochs, restarts, history, stopped_early (checkpointed)
    best_weights: dict | None = None
    resumed_from: str | None = None


@register_quantizer
class RQVAE(QuantizerBase):
    """RQ-VAE quantizer with the same verbs as :class:`RQKMeans`.

    >>> q = RQVAE(codebook_sizes=[256] * 3, max_epochs=100).fit(x)   # x (n, d) float32
    >>> codes = q.encode(x)          # (n, 3) int64
    >>> x_hat = q.decode(codes)      # (n, d) float32, the decoder's reconstruction
    """

    method: ClassVar[str] = "rq-vae"

    config_class = RQVAEConfig
    describe = "RQ-VAE"

    def __init__(self, config: RQVAEConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.model: RQVAEModel | None = None

    @property
    def is_fitted(self) -> bool:
        return self.model is not None

    def _new_model(self, d: int) -> RQVAEModel:
        cfg = self.config
        return RQVAEModel(dim=d, latent_dim=cfg.latent_dim, hidden_dims=list(cfg.hidden_dims), codebook_sizes=self.codebook_sizes)

    # ---- training ---------------------------------------------------------------------
    def fit(
        self,
        x: np.ndarray,
        *,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        progress: Progress | None = None,
    ) -> "RQVAE":
        """Train on ``x`` (n, d) (a memmap is read batch by batch) and keep the codes of
        every row in ``fit_codes_`` (n, L).

        ``on_epoch_end(state)`` is called after each epoch (and its checkpoint) with the
        epoch's numbers; raising from it stops training, which a later ``resume_from``
        continues exactly. ``progress`` gets one task over ``max_epochs``, advanced per
        epoch with the loss and validation MSE.

        Steps: :meth:`_setup` (split, model, optimizer, resume or initialisation), then per
        epoch :meth:`_train_epoch` (over :meth:`_train_step`) and :meth:`_end_epoch`
        (validation, early stopping, checkpoint), then :meth:`_finish` (best weights, codes,
        summary).
        """
        device = resolve_device(self.config.device)
        if device.type == "cpu" and self.config.cpu_threads > 1:
            logger.warning(
                "RQ-VAE cpu_threads=%d is ignored: CPU training runs on one torch thread so that codes "
                "do not depend on the thread count", self.config.cpu_threads,
            )
        # one intra-op thread for the whole call on the CPU (restored after): torch's CPU GEMMs and
        # reductions split by thread count, so any other count would make the weights depend on it.
        # numpy's BLAS on one thread too: its results do not matter (every decision is exact) but
        # the per-step assignment GEMMs are small: spinning BLAS threads cost more than they add
        with cpu_threads(1, device), single_thread_blas():
            x = self._check_fit_input(x)
            t_start = time.perf_counter()
            run = self._setup(x)
            state = run.state
            with as_progress(progress).task("rq-vae", total=self.config.max_epochs, unit="epoch", completed=state["epoch"]) as task:
                while state["epoch"] < self.config.max_epochs and not state["stopped_early"]:
                    mean = self._train_epoch(run, x)
                    self._end_epoch(run, x, mean)
                    last = state["history"][-1]
                    task.advance(1, loss=last["loss"], val_mse=last["val_mse"])
                    if on_epoch_end is not None:
                        on_epoch_end(dict(last, step=state["step"], stopped_early=state["stopped_early"]))
            return self._finish(run, x, t_start)

    def _setup(self, x: np.ndarray) -> _FitRun:
        """Train/validation split (a seeded permutation, so a resumed run sees the same
        split), model, AdamW and schedule, then a checkpoint's state or a fresh start
        (standardisation, k-means initialisation of the codebooks)."""
        n, d = x.shape
        cfg = self.config
        self._dim = d
        device = resolve_device(cfg.device)
        perm = np.random.default_rng([cfg.seed, 0]).permutation(n)
        n_val = int(round(n * cfg.val_fraction))
        if n - n_val < max(cfg.codebook_sizes):
            n_val = max(0, n - max(cfg.codebook_sizes))
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        bs = min(cfg.batch_size, len(train_idx))
        steps_per_epoch = max(1, len(train_idx) // bs)  # drop the last partial batch
        total_steps = steps_per_epoch * cfg.max_epochs

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = self._new_model(d)
        model.to(device)
        # no weight decay on codebooks (it would pull rarely used codes to 0); unlike the
        # package default, biases are decayed: RQ-VAE always trained so, and its codes stay put
        groups = decay_groups(model.named_parameters(), cfg.weight_decay, no_decay=lambda name, p: name.startswith("rvq."))
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_decay(total_steps, min(cfg.warmup_steps, total_steps // 10), floor=cfg.min_lr_ratio))
        run = _FitRun(
            device=device, amp=device.type == "cuda" and cfg.bf16, train_idx=train_idx, val_idx=val_idx, batch_size=bs,
            steps_per_epoch=steps_per_epoch, model=model, opt=opt, sched=sched,
            gen=torch.Generator().manual_seed(cfg.seed + 1),  # dead-code restarts
            usage=[torch.zeros(k, dtype=torch.long, device=device) for k in self.codebook_sizes],
            state={"epoch": 0, "step": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0,
                   "restarts": [0] * self.levels, "history": [], "stopped_early": False},
        )
        if cfg.resume_from:
            run.best_weights = self._load_checkpoint(Path(cfg.resume_from), model, opt, sched, run.gen, run.usage, run.state, n=n, d=d)
            run.resumed_from = str(cfg.resume_from)
            logger.info("resumed RQ-VAE from %s at epoch %d", cfg.resume_from, run.state["epoch"])
        else:
            self._init_standardization(model, x, train_idx)
            if cfg.kmeans_init:
                self._kmeans_init(model, x, train_idx, device)
        return run

    def _train_epoch(self, run: _FitRun, x: np.ndarray) -> np.ndarray:
        """One pass over the training rows in a seeded order: mean (loss, reconstruction, vq)."""
        cfg, state, bs = self.config, run.state, run.batch_size
        run.model.train()
        order = run.train_idx[np.random.default_rng([cfg.seed, 1, state["epoch"]]).permutation(len(run.train_idx))]
        restart_every = cfg.restart_interval or run.steps_per_epoch
        sums = np.zeros(3)
        for s in range(run.steps_per_epoch):
            idx = np.sort(order[s * bs : (s + 1) * bs])  # sorted: sequential reads from a memmap
            losses, residuals = self._train_step(run, x, idx)
            state["step"] += 1
            if cfg.restart_dead_codes and state["step"] % restart_every == 0:
                self._restart_dead(run.model, run.opt, run.usage, residuals, run.gen, state)
            sums += losses
        return sums / run.steps_per_epoch

    def _train_step(self, run: _FitRun, x: np.ndarray, idx: np.ndarray) -> tuple[tuple[float, float, float], list]:
        """One optimizer step on rows ``idx``; counts code usage. Returns (loss, reconstruction,
        vq loss) and the batch's residuals per level (for dead-code restarts)."""
        cfg, model = self.config, run.model
        xb = torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32)).to(run.device)
        xs = model.standardize(xb)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=run.amp):
            z = model.encoder(xs)
        zq, codes, vq_loss, residuals = model.rvq(z.float(), beta=cfg.beta)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=run.amp):
            y = model.decoder(zq)
        rec = (y.float() - xs).pow(2).mean()
        loss = rec + vq_loss
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        run.opt.step()
        run.sched.step()
        for lvl in range(self.levels):
            run.usage[lvl] += torch.bincount(codes[:, lvl], minlength=run.usage[lvl].numel())
        return (loss.item(), rec.item(), vq_loss.item()), residuals

    def _end_epoch(self, run: _FitRun, x: np.ndarray, mean: np.ndarray) -> None:
        """Validation MSE in input space, best weights and early stopping, the epoch's
        history record, and a checkpoint when one is due."""
        cfg, state, model = self.config, run.state, run.model
        epoch = state["epoch"]
        rec_train = float(mean[1]) * float(model.scale) ** 2
        val = self._val_mse(model, x, run.val_idx, run.device) if len(run.val_idx) else rec_train
        if val < state["best_val"] * (1 - cfg.min_delta):
            state["best_val"], state["best_epoch"], state["bad_epochs"] = val, epoch, 0
            run.best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
            if state["bad_epochs"] >= cfg.patience:
                state["stopped_early"] = True
        state["history"].append(
            {"epoch": epoch, "loss": float(mean[0]), "train_mse": rec_train, "vq_loss": float(mean[2]), "val_mse": val, "lr": run.sched.get_last_lr()[0]}
        )
        state["epoch"] = epoch + 1
        logger.debug("epoch %d loss %.5f val_mse %.4g", epoch, mean[0], val)
        if cfg.checkpoint_dir and (state["epoch"] % cfg.checkpoint_every == 0 or state["stopped_early"] or state["epoch"] == cfg.max_epochs):
            n, d = x.shape
            self._save_checkpoint(Path(cfg.checkpoint_dir), model, run.opt, run.sched, run.gen, run.usage, state, run.best_weights, n=n, d=d)

    def _finish(self, run: _FitRun, x: np.ndarray, t_start: float) -> "RQVAE":
        """Keep the best weights (on the CPU), encode every row and write the summary."""
        model, state = run.model, run.state
        if run.best_weights is not None:
            model.load_state_dict(run.best_weights)
        model.eval()
        self.model = model.cpu() if run.device.type != "cpu" else model
        t_train = time.perf_counter() - t_start
        self.fit_codes_ = self.encode(x)
        n, d = x.shape
        hist = state["history"]
        self._summary = {
            "n_train": int(len(run.train_idx)),
            "n_val": int(len(run.val_idx)),
            "dim": int(d),
            "device": str(run.device),
            "bf16": bool(run.amp),
            "epochs": int(state["epoch"]),
            "steps": int(state["step"]),
            "best_epoch": int(state["best_epoch"]),
            "best_val_mse": float(state["best_val"]),
            "stopped_early": bool(state["stopped_early"]),
            "dead_code_restarts": list(state["restarts"]),
            "final_train_loss": hist[-1]["loss"] if hist else None,
            "first_train_loss": hist[0]["loss"] if hist else None,
            "train_seconds": t_train,
            "fit_seconds": time.perf_counter() - t_start,
            "resumed_from": run.resumed_from,
            # every 10th epoch keeps the manifest small
            "history": [h for h in hist if h["epoch"] % 10 == 0 or h is hist[-1]],
        }
        logger.info(
            "RQ-VAE fit on %d x %d: %d epochs, best val mse %.4g at epoch %d, %.1fs",
            n, d, state["epoch"], state["best_val"], state["best_epoch"], t_train,
        )
        return self

    train = fit

    def _init_standardization(self, model: RQVAEModel, x: np.ndarray, idx: np.ndarray, chunk: int = 65536) -> None:
        """Per-feature mean and one global std over the training rows, in float64 chunks."""
        d = x.shape[1]
        if not self.config.standardize:
            return
        s1 = np.zeros(d)
        s2 = 0.0
        for s in range(0, len(idx), chunk):
            s1 += np.asarray(x[idx[s : s + chunk]], dtype=np.float64).sum(0)
        mean = s1 / len(idx)
        for s in range(0, len(idx), chunk):
            a = np.asarray(x[idx[s : s + chunk]], dtype=np.float64) - mean
            s2 += float((a * a).sum())
        std = math.sqrt(s2 / (len(idx) * d)) or 1.0
        model.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        model.scale.fill_(std)

    @torch.no_grad()
    def _kmeans_init(self, model: RQVAEModel, x: np.ndarray, train_idx: np.ndarray, device: str) -> None:
        """k-means per level on the residuals of a seeded sample's latents (exact latents and
        assignments, so the initial codebooks are the same on every machine)."""
        cfg = self.config
        m = min(len(train_idx), max(cfg.kmeans_init_samples, max(cfg.codebook_sizes)))
        order = train_idx[np.random.default_rng([cfg.seed, 1, 0]).permutation(len(train_idx))][:m]
        r = exact_latents(model, x[np.sort(order)])  # [m, latent], the same on every machine
        for level, c in enumerate(model.rvq.codebooks):
            k = c.shape[0]
            kcfg = KMeansConfig(niter=cfg.kmeans_niter, seed=cfg.seed + level)
            cents = train_kmeans(r, k, kcfg, device="cpu")
            c.copy_(torch.from_numpy(cents))
            r -= cents[exact_argmin(r, CodeTable.make(cents))]

    @torch.no_grad()
    def _restart_dead(self, model: RQVAEModel, opt, usage: list, residuals: list, gen: torch.Generator, state: dict) -> None:
        """Codes unused since the last check take a random current residual (plus jitter)."""
        cfg = self.config
        for level, c in enumerate(model.rvq.codebooks):
            dead = torch.nonzero(usage[level] == 0).flatten()
            usage[level].zero_()
            if dead.numel() == 0:
                continue
            r = residuals[level]  # [b, m] this step's residuals at this level
            pick = torch.randint(0, r.shape[0], (dead.numel(),), generator=gen).to(r.device)
            noise = torch.randn(dead.numel(), r.shape[1], generator=gen).to(r.device)
            scale = _std64(r) * cfg.restart_noise
            c[dead] = r[pick] + noise * scale
            st = opt.state.get(c)
            if st:  # forget the dead rows' Adam moments
                st["exp_avg"][dead] = 0
                st["exp_avg_sq"][dead] = 0
            state["restarts"][level] += int(dead.numel())

    @torch.no_grad()
    def _val_mse(self, model: RQVAEModel, x: np.ndarray, idx: np.ndarray, device: str, chunk: int = 8192) -> float:
        """Reconstruction MSE per element in input space (the metric the report shows)."""
        model.eval()
        sse = 0.0
        for s in range(0, len(idx), chunk):
            xb = torch.from_numpy(np.ascontiguousarray(x[idx[s : s + chunk]], dtype=np.float32)).to(device)
            z = model.encoder(model.standardize(xb))
            zq, _, _, _ = model.rvq(z.float(), beta=0.0)
            y = model.unstandardize(model.decoder(zq).float())
            sse += float((y - xb).pow(2).sum())
        model.train()
        return sse / (len(idx) * x.shape[1])

    # ---- checkpoints ------------------------------------------------------------------
    def _save_checkpoint(self, path: Path, model, opt, sched, gen, usage, state, best_weights, *, n: int, d: int) -> None:
        """A directory: model/best weights (safetensors), optimizer+scheduler (torch.save of
        state dicts, loaded with weights_only=True), RNG state and trainer state (JSON)."""
        from safetensors.torch import save_file

        from ..io import atomic_directory

        with atomic_directory(path, overwrite=True) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
            if best_weights is not None:
                save_file({k: v.contiguous() for k, v in best_weights.items()}, str(tmp / "best.safetensors"))
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp / "optimizer.pt")
            rng = {"restart_generator": gen.get_state()}
            rng.update({f"usage_{i}": u.cpu().contiguous() for i, u in enumerate(usage)})
            save_file(rng, str(tmp / "rng.safetensors"))
            meta = {
                "format": CHECKPOINT_FORMAT,
                "method": self.method,
                "n": n,
                "d": d,
                "seed": self.config.seed,
                "architecture": self.config.architecture(),
                "state": state,
            }
            (tmp / "trainer_state.json").write_text(json.dumps(meta, indent=1))

    def _load_checkpoint(self, path: Path, model, opt, sched, gen, usage, state, *, n: int, d: int):
        from safetensors.torch import load_file

        if not (path / "trainer_state.json").exists():
            raise TokenizerKitError(f"resume_from {path}: no trainer_state.json; pass a directory written by checkpoint_dir")
        try:
            meta = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise TokenizerKitError(f"resume_from {path}: trainer_state.json is unreadable ({type(e).__name__}); pass a directory written by checkpoint_dir") from None
        if not isinstance(meta, dict):
            raise TokenizerKitError(f"resume_from {path}: trainer_state.json is not a checkpoint record; pass a directory written by checkpoint_dir")
        expect = {"n": n, "d": d, "seed": self.config.seed, "architecture": self.config.architecture()}
        diff = [f"{k} {meta.get(k)!r} != {v!r}" for k, v in expect.items() if meta.get(k) != v]
        if meta.get("format") != CHECKPOINT_FORMAT or diff:
            raise TokenizerKitError(
                f"resume_from {path} does not match this run ({'; '.join(diff) or 'checkpoint format'}); "
                "resume with the same data, seed and architecture or start without resume_from"
            )
        try:
            model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
            import warnings

            with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
                warnings.simplefilter("ignore")
                opt_state = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
            opt.load_state_dict(opt_state["optimizer"])
            sched.load_state_dict(opt_state["scheduler"])
            rng = load_file(str(path / "rng.safetensors"))
            gen.set_state(rng["restart_generator"])
            for i, u in enumerate(usage):
                u.copy_(rng[f"usage_{i}"])
        except Exception as e:  # damaged safetensors or pickle streams raise many types; code is never unpickled
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TokenizerKitError(f"resume_from {path}: cannot load the checkpoint ({type(e).__name__}: {first[:160]}); start without resume_from") from None
        if not isinstance(meta.get("state"), dict):
            raise TokenizerKitError(f"resume_from {path}: trainer_state.json has no training state; pass a directory written by checkpoint_dir")
        state.update(meta["state"])
        best = path / "best.safetensors"
        return load_file(str(best)) if best.exists() else None

    # ---- encode / decode --------------------------------------------------------------
    def latents(self, x: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Encoder outputs ``z`` (n, latent_dim) float32 for ``x`` (n, d), every layer correctly
        rounded (:func:`exact_latents`): the same on every machine and for every batch size."""
        self._require_fitted()
        x = self._check_input(x, "encode")
        bs = batch_size or self.config.encode_batch_size
        out = np.empty((x.shape[0], self.config.latent_dim), dtype=np.float32)
        for s in range(0, x.shape[0], bs):
            out[s : s + bs] = exact_latents(self.model, x[s : s + bs], chunk=min(bs, 4096))
        return out

    def encode(self, x: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Codes (n, L) int64: greedy residual search on the encoder's latents, near-ties
        decided exactly (``greedy_encode``): bit-identical on every CPU, BLAS kernel, thread
        count and batch size."""
        self._require_fitted()
        x = self._check_input(x, "encode")
        n = x.shape[0]
        bs = batch_size or self.config.encode_batch_size
        tables = [CodeTable.make(c.detach().float().cpu().numpy()) for c in self.model.rvq.codebooks]
        out = np.empty((n, self.levels), dtype=np.int64)
        for s in range(0, n, bs):
            greedy_encode(self.latents(x[s : s + bs]), tables, out=out[s : s + bs])
        return out

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """The decoder's reconstruction (n, d) float32 in input space."""
        self._require_fitted()
        codes = self._check_codes(codes)
        ct = torch.from_numpy(codes.astype(np.int64))
        zq = sum(c[ct[:, level]] for level, c in enumerate(self.model.rvq.codebooks))  # [n, m]
        return self.model.unstandardize(self.model.decoder(zq)).numpy().astype(np.float32, copy=False)

    # ---- serialisation ----------------------------------------------------------------
    def state_tensors(self) -> dict[str, np.ndarray]:
        if not self.is_fitted:
            raise TokenizerKitError("quantizer is not fitted; nothing to save")
        return {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()}

    def summary(self) -> dict[str, Any]:
        return copy.deepcopy(self._summary)

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> "RQVAE":
        config = dict(config)
        dim = config.pop("dim", None)
        q = cls(RQVAEConfig.from_dict(config, legacy=True))
        if dim is None:
            if "mean" not in tensors:
                raise TokenizerKitError("RQ-VAE config has no 'dim' and the weights no 'mean'; the artifact is incomplete")
            dim = int(tensors["mean"].shape[0])
        model = q._new_model(int(dim))
        try:
            model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, strict=True)
        except RuntimeError as e:
            raise TokenizerKitError(f"RQ-VAE weights do not match the config: {' '.join(str(e).split())[:300]}") from None
        model.eval()
        q.model = model
        q._dim = int(dim)
        return q
