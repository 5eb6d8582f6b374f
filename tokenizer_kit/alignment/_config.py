"""The alignment's settings (``QFormerConfig``, ``AlignConfig``) and the embedding poolings,
apart from the torch modules that use them: the CLI and the pipeline read and validate them
without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .._config import ValidatedConfig, setting
from ..errors import InputError

__all__ = ["AlignConfig", "POOLINGS", "QFormerConfig"]

# how ``embed`` turns an item's N_q query vectors into one embedding
POOLINGS = ("flatten", "mean", "raw")


@dataclass
class QFormerConfig(ValidatedConfig):
    label: ClassVar[str] = "QFormer"
    error_type: ClassVar[type[InputError]] = InputError

    feature_dim: int = setting(384, help="Width of the input token features (set from the feature store).", cli=False)
    d_model: int = setting(128, help="QFormer width d_t (the paper: 512; 128 retrieved better on Office).")
    n_queries: int = setting(4, help="N_q learnable query tokens: the item's M~ has N_q x d_model values.")
    n_layers: int = setting(2, help="N_c layers of cross-attention + FFN (the paper: 4; 2 did better on Office).")
    n_heads: int = setting(8, help="Attention heads (must divide d_model).")
    ffn_mult: float = setting(4.0, help="FFN hidden width as a multiple of d_model.")
    dropout: float = setting(0.0, help="Dropout in attention and FFN.")
    norm_eps: float = setting(1e-6, help="RMSNorm epsilon.")
    pooled_query_init: bool = setting(
        True, help="Start the queries from the mean of the item's tokens (not in the paper; helped on Office)."
    )

    def errors(self) -> list[str]:
        e = []
        for name in ("feature_dim", "d_model", "n_queries", "n_layers", "n_heads"):
            if int(getattr(self, name)) < 1:
                e.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_heads >= 1 and self.d_model % self.n_heads:
            e.append(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not self.ffn_mult > 0:
            e.append(f"ffn_mult must be > 0, got {self.ffn_mult}")
        if not 0 <= self.dropout < 1:
            e.append(f"dropout must be in [0, 1), got {self.dropout}")
        return e

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AlignConfig(ValidatedConfig):
    label: ClassVar[str] = "alignment"
    error_type: ClassVar[type[InputError]] = InputError

    flatten: ClassVar[tuple[str, ...]] = ("qformer",)

    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    steps: int = setting(3000, help="Training steps. On Office held-out recall rose up to about 3,000 steps and no "
                         "further (docs/benchmarks.md); preset no-caption drops the caption loss for a faster CPU run.")
    batch_size: int = setting(128, help="Pairs per step (in-batch negatives); 512 did worse on Office (docs/benchmarks.md).")
    lr: float = setting(3e-3, help="Peak AdamW learning rate (cosine decay after warmup).")
    weight_decay: float = setting(0.01, help="AdamW weight decay.")
    warmup_steps: int = setting(50, help="Linear warmup steps.")
    min_lr_ratio: float = setting(0.05, help="Final learning rate as a fraction of lr.")
    grad_clip: float = setting(1.0, help="Gradient norm clip (0 disables).")
    temperature: float = setting(0.07, help="InfoNCE temperature tau.")
    learn_temperature: bool = setting(False, help="Learn tau (did no better on Office).")
    max_tokens: int = setting(32, help="Token vectors read per item (longer items are truncated).")
    caption_weight: float = setting(0.1, help="lambda of the caption loss through a frozen causal LM (0 disables it and the LM).")
    caption_lm: str | None = setting(None, help="Caption LM: HF causal LM dir, DIR::FILE.gguf or hub id (default: offline SmolLM2-135M).")
    caption_batch: int = setting(8, help="Items per step that get the caption loss.")
    caption_every: int = setting(10, help="Caption loss every N steps (1: every step; each runs the frozen caption LM, the costly part of a CPU step).")
    caption_max_tokens: int = setting(32, help="Caption tokens scored per item.")
    caption_fields: tuple[str, ...] = setting(("title", "brand", "categories"), help="Catalogue columns forming the caption.")
    eval_fraction: float = setting(0.05, help="Share of the pairs held out for evaluation when no eval pairs are given.")
    eval_k: int = setting(10, help="k of the held-out pair recall@k.")
    eval_caption_items: int = setting(256, help="Items whose caption loss is scored at the end.")
    log_every: int = setting(10, help="Steps between metrics.jsonl lines.")
    checkpoint_every: int = setting(100, help="Steps between resumable checkpoints.")
    bf16: bool = setting(True, help="bf16 autocast on CUDA; on a CPU with native bf16 (AVX512-BF16 or AMX) only the frozen "
                         "caption LM runs in bf16 (faster caption steps there; the QFormer stays float32 on CPU).")
    # hold every item's first max_tokens token vectors (fp16) on the training device when
    # they fit in this many GiB: batches become one gather instead of a per-item copy loop
    # (the loop, not the GPU, bounded training speed on an H100); 0 always reads the store
    cache_tokens_gib: float = setting(2.0, help="Hold all items' tokens on the training device when they fit in this many GiB (0: read the store every step).")
    seed: int = setting(0, help="Seed of init, pair order and caption items.", bounds=(0, 2**30))
    cpu_threads: int = setting(0, help="torch CPU threads while training on CPU (0: leave torch's setting). On a machine "
                               "shared with other jobs, fewer threads than cores: waiting threads spin for a core.")

    def errors(self) -> list[str]:
        e = list(self.qformer.errors())
        for name in ("steps", "batch_size", "max_tokens", "caption_batch", "caption_every", "caption_max_tokens", "eval_k", "log_every", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                e.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            e.append(f"batch_size must be >= 2 for in-batch negatives, got {self.batch_size}")
        if not self.lr > 0:
            e.append(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            e.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            e.append(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not self.temperature > 0:
            e.append(f"temperature must be > 0, got {self.temperature}")
        if self.caption_weight < 0:
            e.append(f"caption_weight must be >= 0, got {self.caption_weight}")
        if not 0 <= self.eval_fraction < 1:
            e.append(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.grad_clip < 0:
            e.append(f"grad_clip must be >= 0 (0 disables), got {self.grad_clip}")
        if not self.cache_tokens_gib >= 0:
            e.append(f"cache_tokens_gib must be >= 0 (0 disables), got {self.cache_tokens_gib}")
        if self.cpu_threads < 0:
            e.append(f"cpu_threads must be >= 0 (0 = torch's setting), got {self.cpu_threads}")
        return e

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["caption_fields"] = list(self.caption_fields)
        return d
