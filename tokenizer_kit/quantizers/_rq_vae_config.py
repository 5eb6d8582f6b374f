"""RQ-VAE's settings (``RQVAEConfig``), apart from the model: build-codebook's options and
a pipeline's ``[codebook]`` table are read and validated without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._config import ValidatedConfig, setting

__all__ = ["RQVAEConfig"]


@dataclass
class RQVAEConfig(ValidatedConfig):
    label: ClassVar[str] = "RQ-VAE"

    renamed: ClassVar[dict[str, str]] = {"num_threads": "cpu_threads"}

    codebook_sizes: list[int] = setting(help="Codes per level.", default_factory=lambda: [256, 256, 256])
    latent_dim: int = setting(64, help="Width of the quantized latent.")
    hidden_dims: list[int] = setting(help="Encoder hidden widths (the decoder mirrors them).", default_factory=lambda: [512, 256])
    beta: float = setting(0.25, help="Commitment weight (VQ-VAE's beta).")
    standardize: bool = setting(True, help="Train on (x - mean) / std; decode undoes it.")
    # optimisation
    lr: float = setting(3e-3, help="Peak AdamW learning rate.")
    weight_decay: float = setting(1e-4, help="AdamW weight decay.")
    batch_size: int = setting(512, help="Training batch size.")
    max_epochs: int = setting(200, help="Most training epochs (early stop on validation reconstruction).")
    warmup_steps: int = setting(100, help="Linear warmup steps.")
    min_lr_ratio: float = setting(0.05, help="Cosine decay to lr * min_lr_ratio.")
    grad_clip: float = setting(1.0, help="Gradient norm clip (0 = off).")
    # anti-collapse
    kmeans_init: bool = setting(True, help="Initialise codebooks with k-means on the first batches' latents.")
    kmeans_init_samples: int = setting(16384, help="Latents used for the k-means init.")
    kmeans_niter: int = setting(20, help="k-means iterations of the init.")
    restart_dead_codes: bool = setting(True, help="Re-seed unused codes during training.")
    restart_interval: int = setting(0, help="Steps between dead-code checks (0 = once per epoch).")
    restart_noise: float = setting(0.01, help="Relative jitter added to re-seeded codes.")
    # early stopping on validation reconstruction
    val_fraction: float = setting(0.05, help="Share of items held out for early stopping.")
    patience: int = setting(20, help="Epochs without improvement before stopping.")
    min_delta: float = setting(1e-4, help="Relative improvement that counts.")
    # runtime
    seed: int = setting(1234, help="Random seed (same input + seed -> same SIDs).", bounds=(0, 2**30))
    device: str = setting("auto", help="auto, cpu or cuda.", choices=("auto", "cpu", "cuda"))
    bf16: bool = setting(True, help="Autocast encoder/decoder to bf16 on CUDA (never on CPU).")
    encode_batch_size: int = setting(16384, help="Items per encoding batch.")
    # Kept so saved configs load: CPU training always runs on one torch thread, because
    # torch's CPU results (MKL GEMMs, reductions) depend on the thread count and codes must not.
    cpu_threads: int = setting(0, help="Ignored: CPU training runs on one torch thread so codes do not depend on the thread count.")
    checkpoint_dir: str | None = setting(None, help="Write a resumable training checkpoint here every checkpoint_every epochs.")
    checkpoint_every: int = setting(1, help="Epochs between checkpoints.")
    resume_from: str | None = setting(None, help="Resume training from a checkpoint directory written by checkpoint_dir.")

    def errors(self) -> list[str]:
        errs = []
        if not self.codebook_sizes:
            errs.append("codebook_sizes must list at least one level")
        for i, k in enumerate(self.codebook_sizes):
            if not isinstance(k, int) or k < 2:
                errs.append(f"codebook size of level {i} must be an integer >= 2, got {k!r}")
        if not isinstance(self.latent_dim, int) or self.latent_dim < 1:
            errs.append(f"latent_dim must be an integer >= 1, got {self.latent_dim!r}")
        for i, h in enumerate(self.hidden_dims):
            if not isinstance(h, int) or h < 1:
                errs.append(f"hidden_dims[{i}] must be an integer >= 1, got {h!r}")
        if self.beta < 0:
            errs.append(f"beta must be >= 0, got {self.beta}")
        if self.lr <= 0:
            errs.append(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            errs.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 2:
            errs.append(f"batch_size must be >= 2, got {self.batch_size}")
        if self.max_epochs < 1:
            errs.append(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.warmup_steps < 0:
            errs.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            errs.append(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0:
            errs.append(f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        if self.kmeans_init_samples < 1:
            errs.append(f"kmeans_init_samples must be >= 1, got {self.kmeans_init_samples}")
        if self.kmeans_niter < 1:
            errs.append(f"kmeans_niter must be >= 1, got {self.kmeans_niter}")
        if self.restart_interval < 0:
            errs.append(f"restart_interval must be >= 0 (0 = once per epoch), got {self.restart_interval}")
        if self.restart_noise < 0:
            errs.append(f"restart_noise must be >= 0, got {self.restart_noise}")
        if not 0 <= self.val_fraction < 0.5:
            errs.append(f"val_fraction must be in [0, 0.5), got {self.val_fraction}")
        if self.patience < 1:
            errs.append(f"patience must be >= 1, got {self.patience}")
        if self.min_delta < 0:
            errs.append(f"min_delta must be >= 0, got {self.min_delta}")
        if self.encode_batch_size < 1:
            errs.append(f"encode_batch_size must be >= 1, got {self.encode_batch_size}")
        if self.cpu_threads < 0:
            errs.append(f"cpu_threads must be >= 0 (0 = torch default), got {self.cpu_threads}")
        if self.checkpoint_every < 1:
            errs.append(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        return errs


    @classmethod
    def from_dict(cls, d: dict[str, Any], *, legacy: bool = False) -> "RQVAEConfig":
        # "progress" (a bool that turned on a tqdm bar) was a field until progress became
        # the caller's: ``fit(x, progress=...)``; configs saved with it still load
        return super().from_dict({k: v for k, v in d.items() if k != "progress"}, legacy=legacy)

    def architecture(self) -> dict[str, Any]:
        """The keys a checkpoint must share with the config that resumes it."""
        return {
            "codebook_sizes": list(self.codebook_sizes),
            "latent_dim": self.latent_dim,
            "hidden_dims": list(self.hidden_dims),
            "standardize": self.standardize,
        }
