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

    codebook_sizes: list[int] = setting(help="Codes per level.", default_factory=lambda: [256, 256, 256], bounds=(2, None), nonempty=True)
    latent_dim: int = setting(64, help="Width of the quantized latent.", bounds=(1, None))
    hidden_dims: list[int] = setting(help="Encoder hidden widths (the decoder mirrors them).", default_factory=lambda: [512, 256],
                                     bounds=(1, None))
    beta: float = setting(0.25, help="Commitment weight (VQ-VAE's beta).", bounds=(0, None))
    standardize: bool = setting(True, help="Train on (x - mean) / std; decode undoes it.")
    # optimisation
    lr: float = setting(3e-3, help="Peak AdamW learning rate.", bounds="(0, inf)")
    weight_decay: float = setting(1e-4, help="AdamW weight decay.", bounds=(0, None))
    batch_size: int = setting(512, help="Training batch size.", bounds=(2, None))
    max_epochs: int = setting(200, help="Most training epochs (early stop on validation reconstruction).", bounds=(1, None))
    warmup_steps: int = setting(100, help="Linear warmup steps.", bounds=(0, None))
    min_lr_ratio: float = setting(0.05, help="Cosine decay to lr * min_lr_ratio.", bounds=(0, 1))
    grad_clip: float = setting(1.0, help="Gradient norm clip (0 = off).", bounds=(0, None))
    # anti-collapse
    kmeans_init: bool = setting(True, help="Initialise codebooks with k-means on the first batches' latents.")
    kmeans_init_samples: int = setting(16384, help="Latents used for the k-means init.", bounds=(1, None))
    kmeans_niter: int = setting(20, help="k-means iterations of the init.", bounds=(1, None))
    restart_dead_codes: bool = setting(True, help="Re-seed unused codes during training.")
    restart_interval: int = setting(0, help="Steps between dead-code checks (0 = once per epoch).", bounds=(0, None))
    restart_noise: float = setting(0.01, help="Relative jitter added to re-seeded codes.", bounds=(0, None))
    # early stopping on validation reconstruction
    val_fraction: float = setting(0.05, help="Share of items held out for early stopping.", bounds="[0, 0.5)")
    patience: int = setting(20, help="Epochs without improvement before stopping.", bounds=(1, None))
    min_delta: float = setting(1e-4, help="Relative improvement that counts.", bounds=(0, None))
    # runtime
    seed: int = setting(1234, help="Random seed (same input + seed -> same SIDs).", bounds=(0, 2**30))
    device: str = setting("auto", help="auto, cpu or cuda.", choices=("auto", "cpu", "cuda"))
    bf16: bool = setting(True, help="Autocast encoder/decoder to bf16 on CUDA (never on CPU).")
    encode_batch_size: int = setting(16384, help="Items per encoding batch.", bounds=(1, None))
    # Kept so saved configs load: CPU training always runs on one torch thread, because
    # torch's CPU results (MKL GEMMs, reductions) depend on the thread count and codes must not.
    cpu_threads: int = setting(0, help="Ignored: CPU training runs on one torch thread so codes do not depend on the thread count.",
                               bounds=(0, None))
    checkpoint_dir: str | None = setting(None, help="Write a resumable training checkpoint here every checkpoint_every epochs.")
    checkpoint_every: int = setting(1, help="Epochs between checkpoints.", bounds=(1, None))
    resume_from: str | None = setting(None, help="Resume training from a checkpoint directory written by checkpoint_dir.")

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
