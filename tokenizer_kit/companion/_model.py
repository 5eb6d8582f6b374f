"""A small generative retriever over SID tokens: history SIDs -> the next item's SID.

Token ids: 0 pad, 1 eos, 2 bos (the T5 decoder start), 3 sep, then the SID tokens of the
index's ``SIDVocab`` (one block per level, from id 4). A history of m items is the m SIDs
flattened, m * S tokens.

* ``t5`` (TIGER's choice): a randomly initialised ``T5ForConditionalGeneration``; the
  encoder reads ``history + eos``, the decoder writes ``bos`` then the S target tokens.
* ``decoder``: a randomly initialised ``LlamaForCausalLM`` reading ``history + sep`` and
  continuing with the S target tokens (prompts left-padded, so every row's SID starts at
  the same position, as the trie processor wants).

Inference is beam search under the indexer's ``TrieLogitsProcessor`` (its own loop for t5,
``transformers`` ``generate`` for the decoder), so every returned SID is an item's; beams
come back best first.

SIDs shared by several items (another tool's index without zero-collision reassignment, or
policy ``none``) stay in the trie once, so the beam search can generate them. A generated
SID stands for all of its items:

* scoring (``user_ranks``): collision-corrected, as CollisionGenRec defines it: the items of
  a beam SID take the next G item positions in a uniformly random order, so each item
  metric is the expectation over that order (``_metrics``); the SID-level Recall/NDCG are
  reported beside them, as the literature computes them;
* ranked item lists (``rank``, ``recommend``): every item of a beam SID at that SID's rank,
  in index order, until k items are listed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np
import torch

from .._config import ValidatedConfig, setting
from .._progress import Progress, ProgressTask, as_progress
from .._torch_utils import cpu_threads, decay_groups, resolve_device, warmup_decay
from ..errors import ArtifactError, InputError

if TYPE_CHECKING:
    from ._metrics import UserRanks

__all__ = ["RetrievalConfig", "GenerativeRetriever", "list_retrieval_presets", "PAD_ID", "EOS_ID", "BOS_ID", "SEP_ID", "SPECIAL_TOKENS"]

logger = logging.getLogger(__name__)

PAD_ID, EOS_ID, BOS_ID, SEP_ID = 0, 1, 2, 3
SPECIAL_TOKENS = 4


@dataclass
class RetrievalConfig(ValidatedConfig):
    """Model, training and decoding settings of the downstream check (TIGER-like, scaled to CPU).

    ``epochs`` passes over the sliding-window training examples with AdamW (linear warmup
    over ``warmup_ratio`` of the steps, then linear decay). ``eval_every`` > 0 scores the
    validation users every that many epochs and keeps the best weights (by ItemNDCG at the
    largest cut-off); ``patience`` stops early. ``beam_size`` must be >= the largest cut-off
    in ``ks``. ``max_eval_users`` caps the users scored (None = all). ``device``: auto | cpu |
    cuda. The defaults (the ``fast`` preset) are sized for CPU: on Scientific (4,344 items,
    33,541 training windows, 8,317 test users) one seed is about 90 s of one core, 4 x 16 s
    training and about 20 s decoding. Dropout is off because these few epochs underfit: on
    Scientific dropout 0.1 cost 40% more CPU per epoch and scored 0.010 ItemHit@10 after
    one epoch against 0.027 without. The ``tiger`` preset (``RetrievalConfig.preset("tiger")``)
    is TIGER's own model and schedule, for a GPU. ``cpu_threads``:
    torch threads while training / decoding on CPU (restored after; 0 = leave torch's
    setting). One is the default because these small matrices gain little from more, and
    on a shared machine two threads ran 10x slower than one (OpenMP waiting on busy cores).
    """

    label: ClassVar[str] = "retrieval"
    error_type: ClassVar[type[InputError]] = InputError

    renamed: ClassVar[dict[str, str]] = {"num_layers": "n_layers", "num_heads": "n_heads"}

    arch: str = setting("t5", help="t5 (encoder-decoder, as TIGER), decoder (decoder-only), both randomly initialised; or causal-lm "
                        "(a pretrained causal LM, the model setting, with the SID tokens added).", choices=("t5", "decoder", "causal-lm"))
    model: str | None = setting(None, help="arch causal-lm: the causal LM to fine-tune, an HF model directory, DIR::FILE.gguf or "
                                "smollm2 (the offline SmolLM2-135M). d_model, n_layers, n_heads, d_kv, d_ff and dropout are the LM's own then.")
    finetune: str = setting("full", help="arch causal-lm: full (every weight trains) or lora (LoRA adapters plus the SID "
                            "tokens' embedding and output rows).", choices=("full", "lora"))
    lora_rank: int = setting(8, help="arch causal-lm with finetune lora: rank of the adapters (alpha = 2 x rank).")
    sid_init: str = setting("mean", help="arch causal-lm: the SID tokens' initial embeddings, mean (of the LM's, plus noise) or "
                            "codebook (the codebook vectors projected to the LM's width; needs a tokenizer directory).",
                            choices=("mean", "codebook"))
    d_model: int = setting(64, help="Model width.")
    n_layers: int = setting(2, help="Layers (t5: each of encoder and decoder; decoder: twice this).")
    n_heads: int = setting(4, help="Attention heads (must divide d_model unless d_kv is set).")
    d_kv: int | None = setting(None, help="Width of each attention head (t5); None: d_model / n_heads. TIGER: 64 with d_model 128 and 6 heads.")
    d_ff: int = setting(256, help="Feed-forward width.")
    dropout: float = setting(0.0, help="Dropout (off in the fast default: its few epochs underfit; TIGER uses 0.1).")
    max_history: int = setting(20, help="Items of history per example.")
    epochs: int = setting(4, help="Passes over the training windows (Scientific, 33.5k windows: about 16 s of one CPU core each, "
                          "many times that on a busy machine).")
    batch_size: int = setting(128, help="Training examples per step.")
    max_steps: int | None = setting(None, help="Stop training after this many steps (a compute budget; the LR schedule spans them), "
                                    "even within an epoch; None: every epoch.")
    optimizer: str = setting("adamw", help="adamw, or adafactor (T5's and TIGER's optimizer).", choices=("adamw", "adafactor"))
    lr: float = setting(3e-3, help="Peak learning rate.")
    lr_schedule: str = setting("linear", help="linear: warmup, then linear decay to 0 at the last epoch; inverse_sqrt: constant for "
                               "warmup_steps, then lr * sqrt(warmup_steps / step) (T5's and TIGER's).", choices=("linear", "inverse_sqrt"))
    weight_decay: float = setting(0.035, help="Weight decay.")
    warmup_ratio: float = setting(0.05, help="Share of the steps spent in warmup (when warmup_steps is 0).")
    warmup_steps: int = setting(0, help="Warmup steps (linear) or constant steps (inverse_sqrt); 0: warmup_ratio of all steps.")
    grad_clip: float = setting(1.0, help="Gradient norm clip.")
    beam_size: int = setting(10, help="Beam width of the trie-constrained search (>= the largest cut-off in ks).")
    eval_batch_size: int = setting(128, help="Users decoded per batch.")
    eval_every: int = setting(0, help="Score validation users every N epochs and keep the best epoch (0: only the validation loss).")
    patience: int = setting(0, help="Early stopping: stop after this many validation scorings (eval_every) without a better ItemNDCG; 0: never.")
    max_eval_users: int | None = setting(None, help="Score only the first N validation / test users.")
    ks: tuple[int, ...] = setting((5, 10), help="Cut-offs of the metrics (@K).")
    seed: int = setting(0, help="Seed of init, shuffling and dropout (same input + seed -> same result).", bounds=(0, 2**30))
    device: str = setting("auto", help="auto, cpu, cuda or cuda:N.")
    cpu_threads: int = setting(1, help="torch CPU threads while training and decoding on CPU (0: leave torch's setting). "
                               "1 is often fastest on a busy machine.")

    def errors(self) -> list[str]:
        e = []
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "max_history", "batch_size", "beam_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                e.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_heads >= 1 and self.d_kv is None and self.d_model % self.n_heads:
            e.append(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}), or set d_kv")
        if self.d_kv is not None and self.d_kv < 1:
            e.append(f"d_kv must be >= 1 or None, got {self.d_kv}")
        e += self._causal_lm_errors()
        if self.patience < 0:
            e.append(f"patience must be >= 0 (0 = no early stopping), got {self.patience}")
        if self.warmup_steps < 0:
            e.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.patience and not self.eval_every:
            e.append("patience needs eval_every >= 1 (early stopping watches the validation ItemNDCG)")
        if self.epochs < 0:
            e.append(f"epochs must be >= 0, got {self.epochs}")
        if not 0.0 <= self.dropout < 1.0:
            e.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            e.append(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            e.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            e.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.cpu_threads < 0:
            e.append(f"cpu_threads must be >= 0 (0 = torch's default), got {self.cpu_threads}")
        if self.eval_every < 0:
            e.append(f"eval_every must be >= 0, got {self.eval_every}")
        if self.max_eval_users is not None and self.max_eval_users < 1:
            e.append(f"max_eval_users must be >= 1 or None, got {self.max_eval_users}")
        ks = list(self.ks)
        if not ks or any(int(k) < 1 for k in ks):
            e.append(f"ks must be cut-offs >= 1, got {ks}")
        elif self.beam_size < max(ks):
            e.append(f"beam_size ({self.beam_size}) must be >= the largest cut-off {max(ks)} (full ranking needs that many items)")
        try:
            resolve_device(self.device)
        except InputError as err:
            e.append(str(err))
        return e

    def _causal_lm_errors(self) -> list[str]:
        e = []
        if self.arch == "causal-lm" and not self.model:
            e.append("arch causal-lm needs `model`: an HF causal LM directory, DIR::FILE.gguf or smollm2")
        if self.arch != "causal-lm" and self.model:
            e.append(f"`model` is the pretrained LM of arch causal-lm; arch {self.arch} builds its own (set arch causal-lm, or leave model out)")
        if self.max_steps is not None and self.max_steps < 1:
            e.append(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if self.lora_rank < 1:
            e.append(f"lora_rank must be >= 1, got {self.lora_rank}")
        return e

    def validate(self) -> "RetrievalConfig":
        super().validate()
        self.ks = tuple(int(k) for k in self.ks)
        return self

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "RetrievalConfig":
        """A named preset (``tokenizer_kit/presets/retrieval/<name>.json``; ``fast`` is the
        defaults) with ``overrides`` on top, validated. ``list_retrieval_presets()`` names them."""
        from .._config import load_preset

        return cls.from_dict({**load_preset("retrieval", name), **overrides})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ks"] = list(self.ks)
        return d

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)


def list_retrieval_presets() -> list[str]:
    """Names of the companion's presets: ``fast`` (the defaults, sized for CPU) and ``tiger``."""
    from .._config import list_presets

    return list_presets("retrieval")


@contextlib.contextmanager
def _plain_generation_config(model):
    """Within the block ``model.generation_config`` is a default ``GenerationConfig`` (its
    special token ids kept): sampling, top-k/top-p, penalties or forced tokens that a
    pretrained model's config sets cannot reach a ``generate`` call (values left unset in
    a call fall back to the model's config)."""
    from transformers import GenerationConfig

    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft: generate runs the base model's
    old = getattr(model, "generation_config", None)
    if old is None:
        yield
        return
    keep = {k: getattr(old, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")}
    model.generation_config = GenerationConfig(**{k: v for k, v in keep.items() if v is not None})
    try:
        yield
    finally:
        model.generation_config = old


def _build_model(cfg: RetrievalConfig, vocab_size: int, max_positions: int):
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    if cfg.arch == "t5":
        mc = T5Config(
            vocab_size=vocab_size,
            d_model=cfg.d_model,
            d_kv=cfg.d_kv or cfg.d_model // cfg.n_heads,
            d_ff=cfg.d_ff,
            num_layers=cfg.n_layers,
            num_decoder_layers=cfg.n_layers,
            num_heads=cfg.n_heads,
            dropout_rate=cfg.dropout,
            feed_forward_proj="relu",
            pad_token_id=PAD_ID,
            eos_token_id=EOS_ID,
            bos_token_id=BOS_ID,
            decoder_start_token_id=BOS_ID,
            tie_word_embeddings=True,
        )
        return T5ForConditionalGeneration(mc)
    mc = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=2 * cfg.n_layers,  # as deep as the t5 model's encoder + decoder
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=max_positions,
        attention_dropout=cfg.dropout,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        bos_token_id=BOS_ID,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(mc)


class GenerativeRetriever:
    """The model plus what maps items to tokens and back (an ``SIDIndex``'s SIDs, vocabulary and trie).

    >>> r = GenerativeRetriever(index, RetrievalConfig(epochs=5))
    >>> r.fit(split.train_hist, split.train_target)          # per-epoch mean losses
    >>> ranked = r.rank(split.test_hist)                     # (n, beam) item rows, -1 = empty
    """

    def __init__(self, index, config: RetrievalConfig | None = None, *, model=None, vocab=None):
        self.config = (config or RetrievalConfig()).validate()
        self.index = index
        # the token ids of the SID tokens: after the 4 special ids, or where an LM's tokenizer put them
        self.vocab = vocab if vocab is not None else index.vocab(base=SPECIAL_TOKENS)
        self.pad_id, self.eos_id = PAD_ID, EOS_ID
        self.trie = index.trie
        self.S = int(index.sid_length)
        self.item_tokens = self.vocab.encode_batch(index.sids)  # [n_items, S] token ids
        self.vocab_size = int(self.vocab.vocab_end)
        # SIDs -> item rows: mixed-radix keys of every item's codes, sorted, for a searchsorted lookup
        self._radix = np.asarray(self.vocab.level_sizes[: self.S], np.int64)
        keys = self._keys(self.item_tokens)
        self._key_order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._key_order]
        # distinct SIDs ("groups"): the group of each item and the items per group
        self._group_keys, self.item_group, self.group_size = np.unique(keys, return_inverse=True, return_counts=True)
        self.device = self.config.torch_device()
        self.max_positions = self.config.max_history * self.S + self.S + 2
        if model is None:
            torch.manual_seed(self.config.seed)
            model = _build_model(self.config, self.vocab_size, self.max_positions)
        self.model = model.to(self.device)
        self.history: list[dict[str, Any]] = []

    # ---- sizes ----------------------------------------------------------------------------
    @property
    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    def _keys(self, tok: np.ndarray) -> np.ndarray:
        """SID token ids (n, S) -> one int64 key per row (from the codes: an LM's large token ids never overflow it)."""
        key = np.zeros(len(tok), np.int64)
        code = self.vocab.id_code[np.clip(tok, 0, len(self.vocab.id_code) - 1)]  # [n, S], -1 for non-SID ids
        for l in range(self.S):
            key = key * self._radix[l] + np.maximum(code[:, l], 0)
        return key

    # ---- batches ----------------------------------------------------------------------------
    def _prompt(self, hist: np.ndarray) -> np.ndarray:
        hist = np.asarray(hist, np.int64)[-self.config.max_history :]
        toks = self.item_tokens[hist].reshape(-1)  # [m * S]
        end = EOS_ID if self.config.arch == "t5" else SEP_ID
        return np.append(toks, end)

    def _batch(self, hists: list[np.ndarray], targets: np.ndarray | None) -> dict[str, torch.Tensor]:
        prompts = [self._prompt(h) for h in hists]
        B = len(prompts)
        P = max(len(p) for p in prompts)
        ids = np.full((B, P), self.pad_id, np.int64)
        mask = np.zeros((B, P), np.int64)
        left = self.config.arch != "t5"
        for i, p in enumerate(prompts):
            if left:
                ids[i, P - len(p) :], mask[i, P - len(p) :] = p, 1
            else:
                ids[i, : len(p)], mask[i, : len(p)] = p, 1
        out = {"input_ids": ids, "attention_mask": mask}
        if targets is not None:
            tgt = self.item_tokens[np.asarray(targets, np.int64)]  # [B, S]
            if self.config.arch == "t5":
                out["labels"] = np.concatenate([tgt, np.full((B, 1), EOS_ID, np.int64)], 1)  # [B, S+1]
            else:
                out["input_ids"] = np.concatenate([ids, tgt], 1)  # [B, P+S]
                out["attention_mask"] = np.concatenate([mask, np.ones_like(tgt)], 1)
                labels = np.full(out["input_ids"].shape, -100, np.int64)
                labels[:, P:] = tgt
                out["labels"] = labels
        if left:
            m = out["attention_mask"]
            out["position_ids"] = np.maximum(np.cumsum(m, 1) - 1, 0)
        return {k: torch.as_tensor(v, device=self.device) for k, v in out.items()}

    # ---- training ----------------------------------------------------------------------------
    def fit(
        self,
        hists: list[np.ndarray],
        targets: np.ndarray,
        *,
        valid: tuple[list[np.ndarray], np.ndarray] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        progress: Progress | None = None,
    ) -> list[dict[str, Any]]:
        """Train on (history, target) examples; returns one record per epoch (mean loss,
        seconds, step, validation metrics when ``eval_every`` scores ``valid``).

        AdamW (the package's parameter groups) with linear warmup and linear decay; with
        ``eval_every`` the weights of the best validation epoch (NDCG at the largest cut-off)
        are kept. ``on_epoch(record)`` is called after each epoch; ``progress`` gets one
        task advanced per step with the loss.
        """
        with cpu_threads(self.config.cpu_threads, self.device):
            return self._fit(hists, targets, valid=valid, on_epoch=on_epoch, progress=progress)

    def _fit(self, hists, targets, *, valid, on_epoch, progress) -> list[dict[str, Any]]:
        cfg = self.config
        if len(targets) == 0:
            raise InputError("no training examples; users need at least 2 interactions with SIDs for a training target under leave-one-out")
        targets = np.asarray(targets, np.int64)
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        total = max(1, math.ceil(len(targets) / cfg.batch_size) * cfg.epochs)
        total = min(total, cfg.max_steps) if cfg.max_steps else total
        opt, sched = self._optimizer(total)
        lengths = np.asarray([min(len(h), cfg.max_history) for h in hists], np.int64)
        best: tuple[float, dict | None] = (-1.0, None)
        step, stale = 0, 0
        with as_progress(progress).task("retrieval train", total=total, unit="step") as task:
            for epoch in range(1, cfg.epochs + 1):
                t0 = time.perf_counter()
                loss, step = self._train_epoch(hists, targets, lengths, gen, opt, sched, step, task, last=total)
                rec: dict[str, Any] = {"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - t0, "step": step}
                done = epoch == cfg.epochs or step >= total
                if valid is not None and cfg.eval_every and (epoch % cfg.eval_every == 0 or done):
                    best = self._validate_epoch(valid, rec, best)
                    stale = 0 if rec.get("best") else stale + 1
                logger.info("epoch %d/%d loss %.4f (%.1fs)%s", epoch, cfg.epochs, rec["loss"], rec["seconds"],
                            f" valid {rec['valid']}" if "valid" in rec else "")
                self.history.append(rec)
                if on_epoch is not None:
                    on_epoch(rec)
                if cfg.patience and stale >= cfg.patience:
                    rec["early_stop"] = True
                    logger.info("early stop after epoch %d: no better validation NDCG in %d scorings", epoch, stale)
                    break
                if done:
                    break
        if best[1] is not None:
            self.model.load_state_dict(best[1])
        return self.history

    def _optimizer(self, total: int):
        """The optimizer over the package's parameter groups and its LR schedule over ``total`` steps.

        ``linear``: linear warmup (``warmup_steps``, or ``warmup_ratio`` of the steps), then
        linear decay to 0. ``inverse_sqrt`` (T5, TIGER): constant for ``warmup_steps``
        (or ``warmup_ratio`` of the steps), then ``lr * sqrt(warmup_steps / step)``.
        """
        cfg = self.config
        groups = decay_groups(self.model.named_parameters(), cfg.weight_decay)
        if cfg.optimizer == "adafactor":
            opt = torch.optim.Adafactor(groups, lr=cfg.lr)
        else:
            opt = torch.optim.AdamW(groups, lr=cfg.lr)
        warm = cfg.warmup_steps or max(1, int(cfg.warmup_ratio * total))
        if cfg.lr_schedule == "inverse_sqrt":
            return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: math.sqrt(warm / max(step + 1, warm)))
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_decay(total, warm, shape="linear"))

    def _train_epoch(self, hists, targets, lengths, gen, opt, sched, step: int, task: ProgressTask, *, last: int) -> tuple[float, int]:
        """One pass over the examples in length-bucketed shuffled batches, stopping at step
        ``last``: (mean loss, step)."""
        cfg = self.config
        self.model.train()
        loss_sum, seen = 0.0, 0
        for sel in self._epoch_batches(lengths, gen):
            if step >= last:
                break
            batch = self._batch([hists[i] for i in sel], targets[sel])
            loss = self.model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            loss_sum += float(loss.detach()) * len(sel)
            seen += len(sel)
            task.advance(1, loss=float(loss.detach()))
        return loss_sum / seen, step

    def _validate_epoch(self, valid, rec: dict[str, Any], best: tuple[float, dict | None]) -> tuple[float, dict | None]:
        """Score the validation users into ``rec["valid"]``; returns the best (score, weights) so far."""
        cfg = self.config
        vh, vt = valid
        toks, _ = self.generate_sids(vh)
        rec["valid"] = self.user_ranks(toks, vt).metrics(cfg.ks)
        score = rec["valid"][f"item_ndcg@{max(cfg.ks)}"]
        if score > best[0]:
            rec["best"] = True
            return score, {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return best

    def _epoch_batches(self, lengths: np.ndarray, gen: torch.Generator) -> list[np.ndarray]:
        """Shuffled batches of similar history length (sorted within pools of 50 batches: less padding), in shuffled order."""
        bs = self.config.batch_size
        perm = torch.randperm(len(lengths), generator=gen).numpy()
        pool = 50 * bs
        batches = []
        for s in range(0, len(perm), pool):
            chunk = perm[s : s + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + bs] for i in range(0, len(chunk), bs))
        order = torch.randperm(len(batches), generator=gen).tolist()
        return [batches[i] for i in order]

    @torch.no_grad()
    def loss(self, hists: list[np.ndarray], targets: np.ndarray) -> float:
        """Mean loss (eval mode) of the examples."""
        with cpu_threads(self.config.cpu_threads, self.device):
            return self._loss(hists, targets)

    def _loss(self, hists: list[np.ndarray], targets: np.ndarray) -> float:
        self.model.eval()
        tot, cnt = 0.0, 0
        for s in range(0, len(targets), self.config.eval_batch_size):
            sl = slice(s, s + self.config.eval_batch_size)
            b = self._batch(hists[sl], np.asarray(targets)[sl])
            tot += float(self.model(**b).loss) * len(b["input_ids"])
            cnt += len(b["input_ids"])
        return tot / max(cnt, 1)

    # ---- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate_sids(self, hists: list[np.ndarray], *, progress: Progress | None = None, description: str = "decode") -> tuple[np.ndarray, np.ndarray]:
        """Trie-constrained beam search: SID token ids (n, beam, S) best first, and their
        scores (n, beam). ``progress`` gets one task (``description``) advanced per batch."""
        with cpu_threads(self.config.cpu_threads, self.device), as_progress(progress).task(description, total=len(hists), unit="user") as task:
            cfg = self.config
            self.model.eval()
            out_tok = np.zeros((len(hists), cfg.beam_size, self.S), np.int64)
            out_score = np.zeros((len(hists), cfg.beam_size), np.float32)
            # batches of similar history length: far less padding (most histories are short)
            order = np.argsort([min(len(h), cfg.max_history) for h in hists], kind="stable")
            for s in range(0, len(hists), cfg.eval_batch_size):
                sel = order[s : s + cfg.eval_batch_size]
                out_tok[sel], out_score[sel] = self._generate_batch([hists[i] for i in sel])
                task.advance(len(sel))
        return out_tok, out_score

    @torch.no_grad()
    def _generate_batch(self, hists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One batch of :meth:`generate_sids`: (B, beam, S) token ids and (B, beam) scores.

        t5 runs :meth:`_beam_search_t5`; the decoder-only model runs ``transformers``'
        ``generate``. Both return the beam search's result (sum of token log-probabilities,
        best first); slots the trie cannot fill (fewer valid SIDs than beams) score -inf.
        """
        if self.config.arch == "t5":
            return self._beam_search_t5(self._batch(hists, None))
        return self._generate_hf(hists)

    @torch.no_grad()
    def _beam_search_t5(self, b: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """Trie-constrained beam search with the encoder run once per user.

        What ``generate`` does, minus its per-step copies: the first decoder step runs on the B
        users (not B * beam rows), and the cross-attention cache is then repeated once per
        beam and never reordered again, because beams only ever move within their own user
        (``generate`` reorders it every step: most of its time at these sizes). Scores are
        sums of log-softmax over the full vocabulary, masked to the trie's children, as
        ``generate`` with :class:`~tokenizer_kit.indexer.TrieLogitsProcessor` and
        ``length_penalty=0``.
        """
        from transformers import DynamicCache, EncoderDecoderCache
        from transformers.modeling_outputs import BaseModelOutput

        from ..indexer import TrieLogitsProcessor

        K, S = self.config.beam_size, self.S
        ids, mask = b["input_ids"], b["attention_mask"]
        B = ids.shape[0]
        proc = TrieLogitsProcessor(self.trie, self.vocab, prompt_length=1, eos_token_id=None)
        enc = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, d]
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        gen = torch.full((B, 1), BOS_ID, dtype=torch.long, device=ids.device)  # [B, 1+t]
        score = torch.zeros(B, 1, device=ids.device)  # [B, beams so far]
        for t in range(S):
            out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=enc), attention_mask=mask,
                             decoder_input_ids=gen[:, -1:], past_key_values=cache, use_cache=True)
            logp = proc(gen, torch.log_softmax(out.logits[:, -1].float(), -1))  # [rows, V], -inf off the trie
            V = logp.shape[1]
            total = (score.reshape(-1, 1) + logp).reshape(B, -1)  # [B, beams * V]
            score, flat = total.topk(min(K, total.shape[1]), dim=1)  # [B, K]
            if score.shape[1] < K:  # a vocabulary smaller than the beam: empty slots
                pad = K - score.shape[1]
                score = torch.cat([score, score.new_full((B, pad), float("-inf"))], 1)
                flat = torch.cat([flat, flat.new_zeros((B, pad))], 1)
            src = torch.arange(B, device=ids.device)[:, None] * (total.shape[1] // V) + flat // V  # [B, K] source rows
            if t == 0:  # B rows -> B * K: the caches and encoder states repeat once per beam
                cache.self_attention_cache.batch_repeat_interleave(K)
                cache.cross_attention_cache.batch_repeat_interleave(K)
                enc, mask = enc.repeat_interleave(K, 0), mask.repeat_interleave(K, 0)
                src = torch.arange(B, device=ids.device).repeat_interleave(K)
            else:
                src = src.reshape(-1)
                cache.self_attention_cache.reorder_cache(src)
            gen = torch.cat([gen[src], (flat % V).reshape(-1, 1)], 1)
        toks = gen[:, 1:].reshape(B, K, S)
        toks = torch.where(torch.isinf(score)[..., None], torch.full_like(toks, PAD_ID), toks)  # empty slots: no SID
        return toks.cpu().numpy(), score.float().cpu().numpy()

    @torch.no_grad()
    def _generate_hf(self, hists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``transformers`` ``generate`` under the trie processor (the decoder-only model)."""
        from transformers import LogitsProcessorList

        from ..indexer import TrieLogitsProcessor

        cfg = self.config
        beam = cfg.beam_size
        b = self._batch(hists, None)
        B = b["input_ids"].shape[0]
        # t5: the SID follows the decoder start token; decoder: it follows the whole prompt
        prompt_len = 1 if cfg.arch == "t5" else b["input_ids"].shape[1]
        # a beam whose prefix has no continuation may only end (eos); its score is then -inf
        proc = TrieLogitsProcessor(self.trie, self.vocab, prompt_length=prompt_len, eos_token_id=self.eos_id)
        with _plain_generation_config(self.model):
            res = self.model.generate(
                input_ids=b["input_ids"], attention_mask=b["attention_mask"], logits_processor=LogitsProcessorList([proc]),
                **self._beam_settings(), return_dict_in_generate=True, output_scores=False,
            )
        seq = res.sequences[:, prompt_len : prompt_len + self.S]  # [B*beam, <=S]
        if seq.shape[1] < self.S:
            seq = torch.nn.functional.pad(seq, (0, self.S - seq.shape[1]), value=self.pad_id)
        sc = getattr(res, "sequences_scores", None)  # None: generate returns them only with every step's scores
        scores = sc.reshape(B, beam).float().cpu().numpy() if sc is not None else np.zeros((B, beam), np.float32)
        return self._drop_dead_beams(seq.reshape(B, beam, self.S).cpu().numpy(), scores)

    def _drop_dead_beams(self, seq: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Beams (B, beam, S) that are no item's SID, or repeat a better beam's, become -1 tokens at
        score -inf. ``generate`` fills beams it cannot extend (fewer SIDs than beams under a
        prefix) with tokens of -inf (or -1e9) score, which may leave the trie or copy a live beam."""
        groups = self.sid_groups(seq)  # [B, beam]
        dead = (groups < 0) | ~np.isfinite(scores)
        for i, row in enumerate(groups):
            _, first = np.unique(row, return_index=True)
            repeat = np.ones(len(row), bool)
            repeat[first] = False
            dead[i] |= repeat
        seq = np.where(dead[..., None], -1, seq)
        return seq, np.where(dead, -np.inf, scores).astype(np.float32)

    def _beam_settings(self) -> dict[str, Any]:
        """Every ``generate`` setting of the beam search, explicit: greedy beams over exactly S
        tokens, nothing sampled, reweighted or penalised, whatever the model's generation config says."""
        beam = self.config.beam_size
        return dict(
            num_beams=beam, num_return_sequences=beam, max_new_tokens=self.S, min_new_tokens=self.S, do_sample=False,
            early_stopping=True, length_penalty=0.0, temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0,
            no_repeat_ngram_size=0, pad_token_id=self.pad_id, eos_token_id=self.eos_id,
            decoder_start_token_id=BOS_ID if self.config.arch == "t5" else None,
        )

    def _is_sid(self, flat: np.ndarray) -> np.ndarray:
        """Rows (n,) of token ids (n, S) that are SID tokens of levels 0..S-1 in order."""
        V = len(self.vocab.id_level)
        level = self.vocab.id_level[np.clip(flat, 0, V - 1)]  # [n, S]
        return ((flat >= 0) & (flat < V) & (level == np.arange(self.S)[None, :])).all(1)

    def items_of_sids(self, sid_tokens: np.ndarray) -> np.ndarray:
        """Token ids (..., S) -> item row (...) of that SID (first in index order under a collision), -1 if none."""
        flat = np.asarray(sid_tokens, np.int64).reshape(-1, self.S)
        ok = self._is_sid(flat)
        keys = self._keys(np.where(ok[:, None], flat, 0))
        pos = np.searchsorted(self._sorted_keys, keys)
        posc = np.minimum(pos, len(self._sorted_keys) - 1)
        hit = ok & (pos < len(self._sorted_keys)) & (self._sorted_keys[posc] == keys)
        return np.where(hit, self._key_order[posc], -1).reshape(np.shape(sid_tokens)[:-1])

    def sid_groups(self, sid_tokens: np.ndarray) -> np.ndarray:
        """Token ids (..., S) -> id of that SID among the index's distinct SIDs (...), -1 if none.

        ``group_size[g]`` items share SID ``g`` (1 everywhere for a collision-free index)."""
        flat = np.asarray(sid_tokens, np.int64).reshape(-1, self.S)
        ok = self._is_sid(flat)
        keys = self._keys(np.where(ok[:, None], flat, 0))
        pos = np.minimum(np.searchsorted(self._group_keys, keys), len(self._group_keys) - 1)
        hit = ok & (self._group_keys[pos] == keys)
        return np.where(hit, pos, -1).reshape(np.shape(sid_tokens)[:-1])

    def user_ranks(self, sid_tokens: np.ndarray, targets: np.ndarray) -> "UserRanks":
        """Where each target item's SID landed among the generated beams (n, beam, S): the
        :class:`~tokenizer_kit.companion.UserRanks` the standard and collision-corrected
        metrics are computed from."""
        from ._metrics import user_ranks

        return user_ranks(self.sid_groups(sid_tokens), self.item_group[np.asarray(targets, np.int64)], self.group_size)

    def rank(self, hists: list[np.ndarray], *, k: int | None = None, progress: Progress | None = None) -> np.ndarray:
        """Ranked item rows (n, k) for each history (k = beam size by default); -1 fills empty slots."""
        toks, _ = self.generate_sids(hists, progress=progress)
        return self.rank_sids(toks, k=k)

    def rank_sids(self, toks: np.ndarray, *, k: int | None = None) -> np.ndarray:
        """Generated SID token ids (n, beam, S), best first -> ranked item rows (n, k); -1 fills empty slots."""
        k = self.config.beam_size if k is None else int(k)
        first = self.items_of_sids(toks)  # [n, beam]
        n = len(toks)
        out = np.full((n, k), -1, np.int64)
        dup = len(self._sorted_keys) != len(np.unique(self._sorted_keys))
        for i in range(n):
            rows: list[int] = []
            for j, r in enumerate(first[i].tolist()):
                if r < 0:
                    continue
                if dup:  # every item of a shared SID takes the SID's rank
                    key = self._keys(toks[i, j][None, :])[0]
                    lo, hi = np.searchsorted(self._sorted_keys, [key, key + 1])
                    cand = sorted(self._key_order[lo:hi].tolist())
                else:
                    cand = [r]
                for c in cand:
                    if c not in rows:
                        rows.append(c)
                if len(rows) >= k:
                    break
            rows = rows[:k]
            out[i, : len(rows)] = rows
        return out

    def recommend(self, histories: list[list], *, k: int = 10) -> list[list]:
        """Item ids in -> top-k item ids out (unknown history items are ignored)."""
        hist_rows = [np.asarray([r for r in (self.index.row_of(i) for i in h) if r >= 0], np.int64) for h in histories]
        ranked = self.rank(hist_rows, k=k)
        ids = self.index.item_ids
        return [[ids[r].item() if hasattr(ids[r], "item") else ids[r] for r in row if r >= 0] for row in ranked.tolist()]

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, lock_timeout: float | None = None) -> Path:
        """Directory with ``config.json`` (manifest ``io.COMPANION``: retrieval config, vocab
        layout, versions, checksums) and ``model.safetensors``, switched in atomically."""
        from safetensors.torch import save_model

        from ..io._manifest import COMPANION, write_artifact

        path = Path(path)
        with write_artifact(path, COMPANION, overwrite=True, lock_timeout=lock_timeout) as w:
            save_model(self.model, str(w.dir / "model.safetensors"))
            w.fields.update(
                config=self.config.to_dict(),
                sid_length=self.S,
                level_sizes=self.vocab.level_sizes,
                vocab_size=self.vocab_size,
                n_items=int(len(self.index)),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, index) -> "GenerativeRetriever":
        """Load a saved model for ``index`` (the SIDs it was trained on); strict, never unpickles."""
        from ..io._manifest import COMPANION, read_artifact

        return read_artifact(path, COMPANION, lambda m: cls._load(m, index))

    @classmethod
    def _load(cls, m, index) -> "GenerativeRetriever":
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        path = m.path
        meta = m.data
        try:
            r = cls(index, RetrievalConfig.from_dict(meta["config"], legacy=True))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ArtifactError(f"{path}: the retrieval config in config.json is missing or ill-typed ({' '.join(str(e).split())[:160]})") from None
        if r.vocab.level_sizes != meta.get("level_sizes") or r.S != meta.get("sid_length"):
            raise ArtifactError(
                f"{path}: model was trained on SIDs with level sizes {meta.get('level_sizes')}, this index has {r.vocab.level_sizes}; "
                "load it with the index it was trained on"
            )
        try:
            load_model(r.model, str(m.file("model.safetensors")), strict=True, device=str(r.device))
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            raise ArtifactError(f"{path}/model.safetensors does not load into the model ({' '.join(str(e).split())[:160]})") from None
        return r
