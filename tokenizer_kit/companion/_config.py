"""The companion's settings (``RetrievalConfig``) and presets, apart from the model that
uses them: the CLI and the pipeline read and validate them without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .._config import ValidatedConfig, setting
from ..errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["RetrievalConfig", "list_retrieval_presets"]


def _device_errors(device: str) -> list[str]:
    """What is wrong with a ``device`` setting. ``auto`` and ``cpu`` are right on any machine;
    any other value is checked by ``resolve_device`` (which imports torch to see the GPUs)."""
    if device in ("auto", "cpu"):
        return []
    from .._torch_utils import resolve_device

    try:
        resolve_device(device)
    except InputError as err:
        return [str(err)]
    return []


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
    lora_rank: int = setting(8, help="arch causal-lm with finetune lora: rank of the adapters (alpha = 2 x rank).", bounds=(1, None))
    sid_init: str = setting("mean", help="arch causal-lm: the SID tokens' initial embeddings, mean (of the LM's, plus noise) or "
                            "codebook (the codebook vectors projected to the LM's width; needs a tokenizer directory).",
                            choices=("mean", "codebook"))
    d_model: int = setting(64, help="Model width.", bounds=(1, None))
    n_layers: int = setting(2, help="Layers (t5: each of encoder and decoder; decoder: twice this).", bounds=(1, None))
    n_heads: int = setting(4, help="Attention heads (must divide d_model unless d_kv is set).", bounds=(1, None))
    d_kv: int | None = setting(None, help="Width of each attention head (t5); None: d_model / n_heads. TIGER: 64 with d_model 128 and 6 heads.", bounds=(1, None))
    d_ff: int = setting(256, help="Feed-forward width.", bounds=(1, None))
    dropout: float = setting(0.0, help="Dropout (off in the fast default: its few epochs underfit; TIGER uses 0.1).", bounds="[0, 1)")
    max_history: int = setting(20, help="Items of history per example.", bounds=(1, None))
    epochs: int = setting(4, help="Passes over the training windows.", bounds=(0, None))
    batch_size: int = setting(128, help="Training examples per step.", bounds=(1, None))
    max_steps: int | None = setting(None, help="Stop training after this many steps (a compute budget; the LR schedule spans them), "
                                    "even within an epoch; None: every epoch.", bounds=(1, None))
    optimizer: str = setting("adamw", help="adamw, or adafactor (T5's and TIGER's optimizer).", choices=("adamw", "adafactor"))
    lr: float = setting(3e-3, help="Peak learning rate.", bounds="(0, inf)")
    lr_schedule: str = setting("linear", help="linear: warmup, then linear decay to 0 at the last epoch; inverse_sqrt: constant for "
                               "warmup_steps, then lr * sqrt(warmup_steps / step) (T5's and TIGER's).", choices=("linear", "inverse_sqrt"))
    weight_decay: float = setting(0.035, help="Weight decay.", bounds=(0, None))
    warmup_ratio: float = setting(0.05, help="Share of the steps spent in warmup (when warmup_steps is 0).", bounds="[0, 1)")
    warmup_steps: int = setting(0, help="Warmup steps (linear) or constant steps (inverse_sqrt); 0: warmup_ratio of all steps.", bounds=(0, None))
    grad_clip: float = setting(1.0, help="Gradient norm clip.")
    beam_size: int = setting(10, help="Beam width of the trie-constrained search (>= the largest cut-off in ks).", bounds=(1, None))
    eval_batch_size: int = setting(128, help="Users decoded per batch.", bounds=(1, None))
    eval_every: int = setting(0, help="Score validation users every N epochs and keep the best epoch (0: only the validation loss).", bounds=(0, None))
    patience: int = setting(0, help="Early stopping: stop after this many validation scorings (eval_every) without a better ItemNDCG; 0: never.", bounds=(0, None))
    max_eval_users: int | None = setting(None, help="Score only the first N validation / test users.", bounds=(1, None))
    ks: tuple[int, ...] = setting((5, 10), help="Cut-offs of the metrics (@K).", bounds=(1, None), nonempty=True)
    seed: int = setting(0, help="Seed of init, shuffling and dropout (same input + seed -> same result).", bounds=(0, 2**30))
    device: str = setting("auto", help="auto, cpu, cuda or cuda:N.")
    cpu_threads: int = setting(1, help="torch CPU threads while training and decoding on CPU (0: leave torch's setting). "
                               "1 is often fastest on a busy machine.", bounds=(0, None))

    def errors(self) -> list[str]:
        e = []
        if self.n_heads >= 1 and self.d_kv is None and self.d_model % self.n_heads:
            e.append(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}), or set d_kv")
        e += self._causal_lm_errors()
        if self.patience and not self.eval_every:
            e.append("patience needs eval_every >= 1 (early stopping watches the validation ItemNDCG)")
        ks = [int(k) for k in self.ks]
        if ks and min(ks) >= 1 and self.beam_size < max(ks):
            e.append(f"beam_size ({self.beam_size}) must be >= the largest cut-off {max(ks)} (full ranking needs that many items)")
        return e + _device_errors(self.device)

    def _causal_lm_errors(self) -> list[str]:
        e = []
        if self.arch == "causal-lm" and not self.model:
            e.append("arch causal-lm needs `model`: an HF causal LM directory, DIR::FILE.gguf or smollm2")
        if self.arch != "causal-lm" and self.model:
            e.append(f"`model` is the pretrained LM of arch causal-lm; arch {self.arch} builds its own (set arch causal-lm, or leave model out)")
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

    def torch_device(self) -> "torch.device":
        from .._torch_utils import resolve_device

        return resolve_device(self.device)


def list_retrieval_presets() -> list[str]:
    """Names of the companion's presets: ``fast`` (the defaults, sized for CPU) and ``tiger``."""
    from .._config import list_presets

    return list_presets("retrieval")
