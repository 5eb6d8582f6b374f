"""The alignment's settings (``QFormerConfig``, ``AlignConfig``, ``EmbedSettings``), apart
from the torch modules that use them: the CLI and the pipeline read and validate them
without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .._config import ValidatedConfig, setting
from ..errors import InputError

__all__ = ["AlignConfig", "AlignRunConfig", "EmbedSettings", "POOLINGS", "QFormerConfig"]

# how ``embed`` turns an item's N_q query vectors into one embedding
POOLINGS = ("flatten", "mean", "raw")


@dataclass
class QFormerConfig(ValidatedConfig):
    label: ClassVar[str] = "QFormer"
    error_type: ClassVar[type[InputError]] = InputError

    feature_dim: int = setting(384, help="Width of the input token features (set from the feature store).", cli=False, bounds=(1, None))
    d_model: int = setting(128, help="QFormer width d_t (the paper: 512; 128 retrieved better on Office).", bounds=(1, None))
    n_queries: int = setting(4, help="N_q learnable query tokens: the item's M~ has N_q x d_model values.", bounds=(1, None))
    n_layers: int = setting(2, help="N_c layers of cross-attention + FFN (the paper: 4; 2 did better on Office).", bounds=(1, None))
    n_heads: int = setting(8, help="Attention heads (must divide d_model).", bounds=(1, None))
    ffn_mult: float = setting(4.0, help="FFN hidden width as a multiple of d_model.", bounds="(0, inf)")
    dropout: float = setting(0.0, help="Dropout in attention and FFN.", bounds="[0, 1)")
    norm_eps: float = setting(1e-6, help="RMSNorm epsilon.")
    pooled_query_init: bool = setting(
        True, help="Start the queries from the mean of the item's tokens (not in the paper; helped on Office)."
    )

    def errors(self) -> list[str]:
        if self.n_heads >= 1 and self.d_model % self.n_heads:
            return [f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"]
        return []

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AlignConfig(ValidatedConfig):
    label: ClassVar[str] = "alignment"
    error_type: ClassVar[type[InputError]] = InputError

    flatten: ClassVar[tuple[str, ...]] = ("qformer",)

    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    steps: int = setting(3000, help="Training steps. On Office held-out recall rose up to about 3,000 steps and no "
                         "further (docs/benchmarks.md); preset no-caption drops the caption loss for a faster CPU run.", bounds=(1, None))
    batch_size: int = setting(128, help="Pairs per step (in-batch negatives); 512 did worse on Office (docs/benchmarks.md).", bounds=(2, None))
    lr: float = setting(3e-3, help="Peak AdamW learning rate (cosine decay after warmup).", bounds="(0, inf)")
    weight_decay: float = setting(0.01, help="AdamW weight decay.")
    warmup_steps: int = setting(50, help="Linear warmup steps.", bounds=(0, None))
    min_lr_ratio: float = setting(0.05, help="Final learning rate as a fraction of lr.", bounds=(0, 1))
    grad_clip: float = setting(1.0, help="Gradient norm clip (0 disables).", bounds=(0, None))
    temperature: float = setting(0.07, help="InfoNCE temperature tau.", bounds="(0, inf)")
    learn_temperature: bool = setting(False, help="Learn tau (did no better on Office).")
    max_tokens: int = setting(32, help="Token vectors read per item (longer items are truncated).", bounds=(1, None))
    caption_weight: float = setting(0.1, help="lambda of the caption loss through a frozen causal LM (0 disables it and the LM).", bounds=(0, None))
    caption_lm: str | None = setting(None, help="Caption LM: HF causal LM dir, DIR::FILE.gguf or hub id (default: offline SmolLM2-135M).")
    caption_batch: int = setting(8, help="Items per step that get the caption loss.", bounds=(1, None))
    caption_every: int = setting(10, help="Caption loss every N steps (1: every step; each runs the frozen caption LM, the costly part of a CPU step).", bounds=(1, None))
    caption_max_tokens: int = setting(32, help="Caption tokens scored per item.", bounds=(1, None))
    caption_fields: tuple[str, ...] = setting(("title", "brand", "categories"), help="Catalogue columns forming the caption.")
    eval_fraction: float = setting(0.05, help="Share of the pairs held out for evaluation when no eval pairs are given.", bounds="[0, 1)")
    eval_k: int = setting(10, help="k of the held-out pair recall@k.", bounds=(1, None))
    eval_caption_items: int = setting(256, help="Items whose caption loss is scored at the end.")
    log_every: int = setting(10, help="Steps between metrics.jsonl lines.", bounds=(1, None))
    checkpoint_every: int = setting(100, help="Steps between resumable checkpoints.", bounds=(1, None))
    bf16: bool = setting(True, help="bf16 autocast on CUDA; on a CPU with native bf16 (AVX512-BF16 or AMX) only the frozen "
                         "caption LM runs in bf16 (faster caption steps there; the QFormer stays float32 on CPU).")
    # hold every item's first max_tokens token vectors (fp16) on the training device when
    # they fit in this many GiB: batches become one gather instead of a per-item copy loop
    # (the loop, not the GPU, bounded training speed on an H100); 0 always reads the store
    cache_tokens_gib: float = setting(2.0, help="Hold all items' tokens on the training device when they fit in this many GiB (0: read the store every step).", bounds=(0, None))
    seed: int = setting(0, help="Seed of init, pair order and caption items.", bounds=(0, 2**30))
    cpu_threads: int = setting(0, help="torch CPU threads while training on CPU (0: leave torch's setting). On a machine "
                               "shared with other jobs, fewer threads than cores: waiting threads spin for a core.", bounds=(0, None))

    def errors(self) -> list[str]:
        return self.qformer.errors()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["caption_fields"] = list(self.caption_fields)
        return d


@dataclass
class AlignRunConfig(AlignConfig):
    """``AlignConfig`` plus where and how one training run goes: its device and whether it
    resumes. They change neither the recipe nor the result, so the saved alignment's config
    (``AlignConfig``) leaves them out and a run may resume on another device."""

    device: str | None = setting(None, help="cpu, cuda or cuda:N (default: cuda when available).")
    resume: bool = setting(True, help="Resume from the output directory's checkpoint when there is one.")


@dataclass
class EmbedSettings(ValidatedConfig):
    """How a trained alignment embeds a feature store: the one declaration of these settings
    (the embed stage's config extends it; ``embed_store`` checks its arguments against it)."""

    label: ClassVar[str] = "embed"
    error_type: ClassVar[type[InputError]] = InputError

    pooling: str = setting("flatten", help="flatten (N_q*d_t, per-query normalised), mean (d_t) or raw (N_q*d_t as is).", choices=POOLINGS)
    batch_size: int = setting(256, help="Items per forward batch.", bounds=(1, None))
    max_tokens: int | None = setting(None, help="Token vectors read per item (default: the value the model was trained with).",
                                     bounds=(1, None))
