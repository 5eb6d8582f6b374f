"""Alignment training: QFormer on item pairs with InfoNCE (+ caption loss), DDP-ready.

Output directory (``_artifact.ALIGNMENT``, layout in ``alignment/_artifact.py``): the manifest,
``model.safetensors``, ``eval.json`` (the held-out evaluation), ``metrics.jsonl`` and
``checkpoint/``, the latest resume state (``_artifact.CHECKPOINT``: weights and
trainer_state.pt with optimizer, scheduler, step and RNG, loaded with weights_only=True).

Batches are a pure function of (seed, step) (a seeded permutation per epoch), so a resumed run
sees exactly the batches an uninterrupted one would. Under ``torchrun`` each rank takes a
strided slice of every global batch (in-batch negatives are per rank) and DDP averages grads.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .._progress import Progress, as_progress
from .._torch_utils import cpu_has_native_bf16, cpu_threads, decay_groups, resolve_device, warmup_decay
from ..errors import ArtifactError, InputError
from ..io import atomic_write, write_artifact
from .._config import base_config
from ._artifact import ALIGNMENT, CHECKPOINT, CHECKPOINT_DIR, EVAL_NAME, has_checkpoint, read_checkpoint_record
from ._config import AlignConfig, AlignRunConfig
from ._losses import Temperature, info_nce, item_vectors
from ._qformer import QFormer

__all__ = ["AlignConfig", "AlignData", "AlignmentModel", "train_alignment", "evaluate_alignment", "embed_indices", "pair_recall_at_k", "pooled_features", "ALIGNMENT_FORMAT_VERSION"]

logger = logging.getLogger(__name__)

ALIGNMENT_FORMAT_VERSION = ALIGNMENT.format_version


class AlignmentModel(nn.Module):
    """The trainable part: QFormer, optional caption prefix projection, temperature.

    ``forward(tokens (b, t, f), mask (b, t), caption_rows (c,) local indices | None)``
    -> ``(M~ (b, n_q, d), prefix (c, n_q, H) | None, tau scalar)``.
    """

    def __init__(self, config: AlignConfig, *, lm_hidden: int | None = None):
        super().__init__()
        self.qformer = QFormer(config.qformer)
        self.caption_proj = nn.Linear(config.qformer.d_model, lm_hidden) if lm_hidden else None
        self.temperature = Temperature(config.temperature, learn=config.learn_temperature)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, caption_rows: torch.Tensor | None = None):
        m = self.qformer(tokens, mask)
        prefix = None
        if self.caption_proj is not None and caption_rows is not None:
            prefix = self.caption_proj(m[caption_rows])
        return m, prefix, self.temperature()


# --------------------------------------------------------------------------- data helpers
def _pair_indices(pairs, store) -> tuple[np.ndarray, np.ndarray, int]:
    a = pairs.column("item_a").to_pylist()
    b = pairs.column("item_b").to_pylist()
    idx = {iid: i for i, iid in enumerate(store.item_ids)}
    ia = np.array([idx.get(str(x), -1) for x in a], dtype=np.int64)
    ib = np.array([idx.get(str(x), -1) for x in b], dtype=np.int64)
    ok = (ia >= 0) & (ib >= 0) & (ia != ib)
    return ia[ok], ib[ok], int((~ok).sum())


class _TokenCache:
    """Every item's first ``max_tokens`` token vectors, padded, fp16, on ``device``.

    ``batch(items)`` returns what ``store.batch(items, max_tokens)`` returns (tokens float32,
    mask), padded to the longest item of the batch, as tensors already on the device.
    """

    def __init__(self, store, *, max_tokens: int, device: torch.device):
        lengths = np.minimum(store.lengths(), max_tokens)
        t = max(1, int(lengths.max(initial=1)))
        tok = np.zeros((len(store), t, store.dim), dtype=np.float16)
        for i, n in enumerate(lengths.tolist()):
            tok[i, :n] = store.tokens(i)[:n]
        self.tokens = torch.from_numpy(tok).to(device)
        self.lengths = torch.from_numpy(lengths).to(device)
        self._np_lengths = lengths
        self._pos = torch.arange(t, device=device)

    @staticmethod
    def nbytes(store, max_tokens: int) -> int:
        return len(store) * min(int(store.lengths().max(initial=1)), max_tokens) * store.dim * 2

    def batch(self, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = max(1, int(self._np_lengths[items].max(initial=1)))
        idx = torch.from_numpy(np.asarray(items, dtype=np.int64)).to(self.tokens.device)
        tok = self.tokens[idx, :t].float()
        mask = self._pos[:t][None, :] < self.lengths[idx][:, None]
        return tok, mask


def _batch_for_step(step: int, n_pairs: int, batch_size: int, seed: int) -> np.ndarray:
    per_epoch = max(1, n_pairs // batch_size)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n_pairs)
    return perm[k * batch_size : (k + 1) * batch_size]


@torch.no_grad()
def embed_indices(
    model: QFormer, store, indices: Sequence[int], *, batch_size: int = 256, max_tokens: int | None = None,
    device: torch.device | str = "cpu", progress: Progress | None = None,
) -> np.ndarray:
    """M~ for store rows ``indices``: (n, n_q, d) float32, in batches."""
    model.eval()
    dev = torch.device(device)
    out = np.empty((len(indices), model.config.n_queries, model.config.d_model), dtype=np.float32)
    with as_progress(progress).task("embed", total=len(indices), unit="item") as task:
        for s in range(0, len(indices), batch_size):
            chunk = list(indices[s : s + batch_size])
            tok, mask, _ = store.batch(chunk, max_tokens)
            m = model(torch.from_numpy(tok).to(dev), torch.from_numpy(mask).to(dev))
            out[s : s + len(chunk)] = m.float().cpu().numpy()
            task.advance(len(chunk))
    return out


def pooled_features(store, *, batch_size: int = 512, max_tokens: int | None = None) -> np.ndarray:
    """Masked mean of each item's raw token vectors, L2-normalised: (n, feature_dim) float32."""
    out = np.empty((len(store), store.dim), dtype=np.float32)
    for s in range(0, len(store), batch_size):
        idx = list(range(s, min(s + batch_size, len(store))))
        tok, mask, _ = store.batch(idx, max_tokens)
        v = (tok * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
        out[s : s + len(idx)] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return out


def pair_recall_at_k(vectors: np.ndarray, a: np.ndarray, b: np.ndarray, k: int = 10, *, chunk: int = 1024) -> float:
    """Recall@k of pair retrieval, both directions: for each pair (a, b) the query a ranks all
    other items by dot product (cosine for unit vectors); a hit if b is in the top k."""
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    q = np.r_[a, b]
    t = np.r_[b, a]
    hits = 0
    for s in range(0, len(q), chunk):
        qi = torch.from_numpy(q[s : s + chunk])
        sims = x[qi] @ x.T  # [c, n]
        sims[torch.arange(len(qi)), qi] = float("-inf")
        target = sims[torch.arange(len(qi)), torch.from_numpy(t[s : s + chunk])]
        rank = (sims > target[:, None]).sum(1)  # items strictly better than the partner
        hits += int((rank < k).sum())
    return hits / max(len(q), 1)


# --------------------------------------------------------------------------- checkpoints
def _save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(path) as tmp:
        save_file(sd, str(tmp))


def _load_weights(model: nn.Module, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ArtifactError(f"{path} cannot be read ({' '.join(str(e).split())[:160]}); it is damaged or missing") from None
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ArtifactError(f"{path}: weights do not match the model (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}); was it written with another config?")


def _save_checkpoint(out: Path, model, opt, sched, step: int, cfg: AlignConfig) -> None:
    """The resume state, one artifact (``CHECKPOINT``) switched in atomically: weights, trainer
    state, and the step and config in its manifest."""
    with write_artifact(out / CHECKPOINT_DIR, CHECKPOINT, overwrite=True) as w:
        d = w.dir
        _save_weights(model, d / "model.safetensors")
        state = {
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "step": step,
            "torch_rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        torch.save(state, d / "trainer_state.pt")
        w.fields.update(step=step, config=cfg.to_dict())


_RESUME_FREE = frozenset({"cache_tokens_gib", "log_every", "checkpoint_every", "cpu_threads"})


def _load_checkpoint(out: Path, model, opt, sched, cfg: AlignConfig) -> int:
    """Restore model, optimizer, scheduler and RNG from ``out/checkpoint``; returns its step.

    Never unpickles code (``weights_only=True``); a damaged, foreign or code-carrying
    checkpoint is one ``ArtifactError`` saying to resume elsewhere or start over.
    """
    import pickle

    d = out / CHECKPOINT_DIR
    fix = f"delete {d} to start over, or choose another `out`"
    saved = read_checkpoint_record(out)["config"]
    now = cfg.to_dict()
    # options that change speed, not results, may differ on resume
    diff = sorted(k for k in now if k not in _RESUME_FREE and saved.get(k) != now[k])
    if diff:
        raise ArtifactError(f"{d}: checkpoint was written with another config (differs in {diff}); use the same settings, or another `out`")
    try:
        _load_weights(model, d / "model.safetensors")
        import warnings

        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(d / "trainer_state.pt", weights_only=True, map_location="cpu")
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return int(state["step"])
    except ArtifactError:
        raise
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{d / 'trainer_state.pt'} is corrupt or holds code, which is never unpickled ({first[:160]}); {fix}") from None
    except Exception as e:  # a damaged pickle stream can raise nearly anything (IndexError, EOFError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{d}: the checkpoint cannot be loaded ({type(e).__name__}: {first[:160]}); {fix}") from None


# --------------------------------------------------------------------------- training
def _dist_info() -> tuple[int, int, bool]:
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    return 0, 1, False


@dataclass(kw_only=True)
class _Run:
    """What one training run holds between its steps (built by :func:`_setup`)."""

    cfg: AlignConfig
    store: Any
    out: Path
    dev: torch.device
    rank: int
    world: int
    own_pg: bool
    ia: np.ndarray  # training pairs, store rows [n]
    ib: np.ndarray
    ea: np.ndarray  # held-out pairs, store rows [m]
    eb: np.ndarray
    model: AlignmentModel
    ddp_model: nn.Module
    cap: Any
    params: list
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    cache: _TokenCache | None = None
    step: int = 0

    @property
    def autocast(self) -> bool:
        return self.dev.type == "cuda" and self.cfg.bf16


@dataclass
class AlignData:
    """What a training run reads besides the store and the pairs, all optional: ``captions``
    (one per store item; needed when ``caption_weight > 0``), ``caption_lm`` (a ``(model,
    tokenizer)`` pair, else loaded from ``config.caption_lm``), ``eval_pairs`` (held-out
    pairs; default: hold out ``eval_fraction`` of the pairs) and ``info`` (the inputs' paths
    and checksums, written into the manifest)."""

    captions: Sequence[str] | None = None
    caption_lm: Any = None
    eval_pairs: Any = None
    info: dict[str, Any] | None = None


def train_alignment(
    *,
    store,
    pairs,
    out: str | os.PathLike,
    config: AlignConfig | None = None,
    data: AlignData | None = None,
    stop_after: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train the QFormer and write the alignment directory ``out``; returns the summary dict.

    ``store``: a FeatureStore; ``pairs``: Table ``item_a, item_b[, source]``; ``config``: the
    recipe (an ``AlignRunConfig`` also sets the device, auto when None, and whether to resume
    from ``out``'s checkpoint, the default); ``data``: the optional inputs (``AlignData``).
    ``stop_after`` ends the run early after that many steps (simulates an interruption; the
    checkpoint stays). ``progress`` gets one task, advanced per step with the step's loss.

    The run is a recipe of named steps (torchtune's shape): :func:`_setup` (distributed
    init, pairs, model, optimizer, resume, token cache), :func:`_train` (the loop over
    :func:`_train_step`, with logging and checkpoints), then, once every step is done,
    :func:`evaluate_alignment` and :func:`_save_final`.
    """
    run_cfg = (config or AlignConfig()).validate()
    device, resume = (run_cfg.device, run_cfg.resume) if isinstance(run_cfg, AlignRunConfig) else (None, True)
    cfg = base_config(run_cfg, AlignConfig)
    data = data or AlignData()
    if cfg.qformer.feature_dim != store.dim:
        raise InputError(f"qformer.feature_dim is {cfg.qformer.feature_dim} but the feature store has dim {store.dim}; set feature_dim={store.dim}")
    with cpu_threads(cfg.cpu_threads, resolve_device(device)):
        run = _setup(cfg, store, pairs, Path(out), captions=data.captions, caption_lm=data.caption_lm, eval_pairs=data.eval_pairs,
                     resume=resume, device=device)
        end = cfg.steps if stop_after is None else min(cfg.steps, run.step + int(stop_after))
        t0 = time.time()
        _train(run, end, progress)
        summary: dict[str, Any] = {
            "steps_done": run.step, "steps": cfg.steps, "world_size": run.world, "train_pairs": int(len(run.ia)),
            "eval_pairs": int(len(run.ea)), "train_seconds": round(time.time() - t0, 2),
        }
        if run.world > 1:
            summary["ranks_in_sync"] = _ranks_in_sync(run)
        if run.step >= cfg.steps and run.rank == 0:
            summary["eval"] = evaluate_alignment(run.model, store, run.ea, run.eb, cfg, cap=run.cap, device=run.dev)
            _save_final(run, summary, data.info)
        _teardown(run)
    return summary


def _setup(cfg: AlignConfig, store, pairs, out: Path, *, captions, caption_lm, eval_pairs, resume: bool, device) -> _Run:
    """Everything before the first step; the order of the seeded draws is part of the
    result (pairs split, then the caption LM, then the model's initialisation)."""
    rank, world, own_pg = _dist_info()
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(dev)
    torch.manual_seed(cfg.seed)
    ia, ib, ea, eb = _train_eval_pairs(cfg, store, pairs, eval_pairs)
    model, cap = _build_model(cfg, store, captions, caption_lm, dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(decay_groups(model.named_parameters(), cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_decay(cfg.steps, cfg.warmup_steps, floor=cfg.min_lr_ratio))
    run = _Run(cfg=cfg, store=store, out=out, dev=dev, rank=rank, world=world, own_pg=own_pg, ia=ia, ib=ib, ea=ea, eb=eb,
               model=model, ddp_model=model, cap=cap, params=params, opt=opt, sched=sched)
    run.step = _resume(run, resume)
    if cfg.cache_tokens_gib > 0 and _TokenCache.nbytes(store, cfg.max_tokens) <= cfg.cache_tokens_gib * 2**30:
        run.cache = _TokenCache(store, max_tokens=cfg.max_tokens, device=dev)
        logger.info("token cache: %d items x %d tokens on %s", len(store), run.cache.tokens.shape[1], dev)
    if world > 1:  # after resuming: DDP broadcasts rank 0's weights when it wraps the model
        from torch.nn.parallel import DistributedDataParallel as DDP

        run.ddp_model = DDP(model, find_unused_parameters=cap is not None and cfg.caption_every > 1)
    return run


def _train_eval_pairs(cfg: AlignConfig, store, pairs, eval_pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and held-out pairs as store rows: ``eval_pairs`` when given, else a seeded
    ``eval_fraction`` of ``pairs``."""
    ia, ib, dropped = _pair_indices(pairs, store)
    if dropped:
        logger.warning("%d pairs name items missing from the feature store (or self-pairs); skipped", dropped)
    if eval_pairs is not None:
        ea, eb, _ = _pair_indices(eval_pairs, store)
    else:
        perm = np.random.default_rng(cfg.seed).permutation(len(ia))
        n_eval = int(round(cfg.eval_fraction * len(ia)))
        ev, tr = perm[:n_eval], np.sort(perm[n_eval:])
        ea, eb = ia[ev], ib[ev]
        ia, ib = ia[tr], ib[tr]
    if len(ia) < cfg.batch_size:
        raise InputError(f"{len(ia)} training pairs match the feature store, fewer than batch_size {cfg.batch_size}; lower `batch_size` or give more pairs")
    return ia, ib, ea, eb


def _build_model(cfg: AlignConfig, store, captions, caption_lm, dev: torch.device):
    """The trainable model and, when ``caption_weight > 0``, the frozen caption LM wrapper."""
    from ._caption import CaptionLM, load_caption_lm

    cap = None
    if cfg.caption_weight > 0:
        if captions is None or len(captions) != len(store):
            raise InputError("the caption loss needs one caption per feature-store item; pass the catalogue's `captions` or set `caption_weight` to 0")
        lm, tok = caption_lm if caption_lm is not None else load_caption_lm(cfg.caption_lm, device=str(dev))
        cpu_bf16 = cfg.bf16 and dev.type == "cpu" and cpu_has_native_bf16()
        cap = CaptionLM(lm, tok, captions, max_tokens=cfg.caption_max_tokens, cpu_bf16=cpu_bf16).to(dev)
    model = AlignmentModel(cfg, lm_hidden=cap.hidden_size if cap is not None else None).to(dev)
    return model, cap


def _resume(run: _Run, resume: bool) -> int:
    """Load the checkpoint in ``out`` when resuming (returns its step, else 0) and drop the
    metric lines the resumed run will write again."""
    out, start = run.out, 0
    if resume and has_checkpoint(out):
        start = _load_checkpoint(out, run.model, run.opt, run.sched, run.cfg)
        logger.info("resumed from %s at step %d", out / CHECKPOINT_DIR, start)
    elif run.rank == 0 and (out / "model.safetensors").exists() and not resume:
        logger.info("overwriting %s", out)
    if run.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        mpath = out / "metrics.jsonl"
        if mpath.exists():
            kept = [ln for ln in mpath.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= start and "eval" not in json.loads(ln)]
            mpath.write_text("".join(k + "\n" for k in kept))
    return start


def _train(run: _Run, end: int, progress: Progress | None) -> None:
    """Steps ``run.step`` .. ``end``: a log record every ``log_every`` steps (means since the
    last one), a checkpoint every ``checkpoint_every`` and at ``end``."""
    cfg = run.cfg
    run.model.train()
    if run.cap is not None:
        run.cap.train()
    running: dict[str, list[float]] = {}
    t0 = time.time()
    with as_progress(progress).task("align", total=cfg.steps, unit="step", completed=run.step) as task:
        while run.step < end:
            vals, tau = _train_step(run)
            run.step += 1
            for k, v in vals.items():
                running.setdefault(k, []).append(v)
            if run.rank == 0 and (run.step % cfg.log_every == 0 or run.step == end):
                _log_record(run, running, tau, time.time() - t0)
                running = {}
            if run.step % cfg.checkpoint_every == 0 or run.step == end:
                if run.rank == 0:
                    _save_checkpoint(run.out, run.model, run.opt, run.sched, run.step, cfg)
                if run.world > 1:
                    import torch.distributed as dist

                    dist.barrier()
            task.advance(1, loss=vals["loss"])


def _step_batch(run: _Run, step: int):
    """This rank's pairs of global batch ``step``: the unique items' tokens (on the device)
    and each side's position among them."""
    gidx = _batch_for_step(step, len(run.ia), run.cfg.batch_size, run.cfg.seed)
    lidx = gidx[run.rank :: run.world]
    a, b = run.ia[lidx], run.ib[lidx]
    items, inv = np.unique(np.r_[a, b], return_inverse=True)
    if run.cache is not None:
        tok_t, mask_t = run.cache.batch(items)
    else:
        tok, mask, _ = run.store.batch(items.tolist(), run.cfg.max_tokens)
        tok_t, mask_t = torch.from_numpy(tok).to(run.dev), torch.from_numpy(mask).to(run.dev)
    return items, inv[: len(a)], inv[len(a) :], tok_t, mask_t


def _train_step(run: _Run) -> tuple[dict[str, float], torch.Tensor]:
    """One optimizer step: InfoNCE over the batch's pairs (+ the caption loss on a seeded
    subset of its items every ``caption_every`` steps). Returns the step's numbers and tau."""
    cfg, dev, step = run.cfg, run.dev, run.step
    items, inv_a, inv_b, tok_t, mask_t = _step_batch(run, step)
    cap_rows = None
    if run.cap is not None and step % cfg.caption_every == 0:
        crng = np.random.default_rng([cfg.seed, 7, step, run.rank])
        cap_rows = np.sort(crng.choice(len(items), size=min(cfg.caption_batch, len(items)), replace=False))
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=run.autocast):
        m, prefix, tau = run.ddp_model(tok_t, mask_t, None if cap_rows is None else torch.from_numpy(cap_rows).to(dev))
        ta, tb = torch.from_numpy(inv_a).to(dev), torch.from_numpy(inv_b).to(dev)
        eye = torch.eye(len(inv_a), dtype=torch.bool, device=dev)
        same_b = (tb[None, :] == tb[:, None]) & ~eye  # pairs sharing an item are not negatives
        same_a = (ta[None, :] == ta[:, None]) & ~eye
        l_nce = info_nce(m[ta], m[tb], tau, same_a=same_a, same_b=same_b)
        loss, l_cap = l_nce, None
        if cap_rows is not None:
            l_cap = run.cap.loss(prefix, torch.from_numpy(items[cap_rows]).to(dev))
            loss = loss + cfg.caption_weight * l_cap
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.tensor(0.0)
    run.opt.step()
    run.sched.step()
    vals = {"loss": float(loss.detach()), "info_nce": float(l_nce.detach()), "grad_norm": float(gnorm)}
    if l_cap is not None:
        vals["caption"] = float(l_cap.detach())
    return vals, tau


def _log_record(run: _Run, running: dict[str, list[float]], tau: torch.Tensor, elapsed: float) -> None:
    """One line of ``metrics.jsonl``: the means since the last line, lr, tau, elapsed seconds."""
    avg = {k: sum(v) / len(v) for k, v in running.items()}
    rec = {"step": run.step, **avg, "lr": run.sched.get_last_lr()[0], "tau": float(tau.detach()), "elapsed_s": round(elapsed, 3)}
    with open(run.out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    logger.info("step %d loss %.4f", run.step, rec["loss"])


def _ranks_in_sync(run: _Run) -> bool:
    """Whether every rank holds the same weights after the DDP steps."""
    import torch.distributed as dist

    chk = torch.stack([p.detach().double().sum() for p in run.model.parameters()]).sum().reshape(1).to(run.dev)
    allc = [torch.zeros_like(chk) for _ in range(run.world)]
    dist.all_gather(allc, chk)
    return bool(all(torch.equal(c, allc[0]) for c in allc))


def _save_final(run: _Run, summary: dict[str, Any], inputs_info: dict[str, Any] | None) -> None:
    """The deployable artifact (rank 0): ``model.safetensors``, the evaluation in ``eval.json``
    and the manifest, switched in with one atomic step (``io.write_artifact``);
    ``metrics.jsonl`` and ``checkpoint/`` carry over."""
    out, store, cap = run.out, run.store, run.cap
    info = dict(inputs_info or {})
    info.setdefault("feature_store", {"path": str(store.path), "dim": store.dim, "n_items": len(store), "config": store.manifest.get("config")})
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": run.step, "eval": summary["eval"]}) + "\n")
    with write_artifact(out, ALIGNMENT, overwrite=True) as w:
        _save_weights(run.model, w.dir / "model.safetensors")
        (w.dir / EVAL_NAME).write_text(json.dumps(summary["eval"], indent=2) + "\n")
        w.fields.update(
            kind="qformer-alignment",
            config=run.cfg.to_dict(),
            lm_hidden=cap.hidden_size if cap is not None else None,
            inputs=info,
            summary={k: v for k, v in summary.items() if k != "eval"},
        )


def _teardown(run: _Run) -> None:
    """Wait for every rank; end the process group this run started."""
    if run.world > 1:
        import torch.distributed as dist

        dist.barrier()
        if run.own_pg:
            dist.destroy_process_group()


@torch.no_grad()
def evaluate_alignment(model: AlignmentModel, store, ea: np.ndarray, eb: np.ndarray, cfg: AlignConfig, *, cap=None, device="cpu") -> dict[str, Any]:
    """Held-out pair recall@k (aligned vs mean-pooled raw features) and, with a caption LM,
    caption loss with and without the M~ prefix on held-out items."""
    res: dict[str, Any] = {"k": cfg.eval_k, "n_pairs": int(len(ea))}
    if len(ea) == 0:
        return res
    m = embed_indices(model.qformer, store, list(range(len(store))), max_tokens=cfg.max_tokens, device=device)
    aligned = item_vectors(torch.from_numpy(m)).numpy()
    raw = pooled_features(store, max_tokens=cfg.max_tokens)
    ra = pair_recall_at_k(aligned, ea, eb, cfg.eval_k)
    rr = pair_recall_at_k(raw, ea, eb, cfg.eval_k)
    res.update({"recall_aligned": ra, "recall_raw_pooled": rr, "recall_ratio": ra / rr if rr > 0 else None})
    if cap is not None and model.caption_proj is not None:
        items = np.unique(np.r_[ea, eb])[: cfg.eval_caption_items]
        # control: each caption after ANOTHER item's prefix (a seeded derangement); a prefix
        # that carries item content scores its own caption better than another item's
        perm = np.random.default_rng(cfg.seed).permutation(len(items))
        other = np.empty_like(items)
        other[perm] = items[np.roll(perm, 1)]
        cap.eval()
        with_p, without, shuffled = [], [], []
        for s in range(0, len(items), 16):
            rows = torch.from_numpy(items[s : s + 16]).to(device)
            prefix = model.caption_proj(torch.from_numpy(m[items[s : s + 16]]).to(device))
            with_p.append(cap.loss(prefix, rows, reduction="none"))
            without.append(cap.loss(None, rows, reduction="none"))
            if len(items) > 1:
                prefix_o = model.caption_proj(torch.from_numpy(m[other[s : s + 16]]).to(device))
                shuffled.append(cap.loss(prefix_o, rows, reduction="none"))
        res["caption_loss_with_prefix"] = float(torch.cat(with_p).mean())
        res["caption_loss_without_prefix"] = float(torch.cat(without).mean())
        if shuffled:
            res["caption_loss_other_item_prefix"] = float(torch.cat(shuffled).mean())
        res["caption_items"] = int(len(items))
    model.train()
    return res
