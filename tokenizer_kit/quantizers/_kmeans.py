"""K-means engine: FAISS k-means (every GPU FAISS sees, else CPU) and batched nearest search.

``nearest`` is the hot loop of encoding: one GEMM per batch, ``||c||^2 - 2 r.c`` (+ an
optional per-code bias), then an argmin. It runs on numpy/BLAS on the CPU and on torch when
the device is CUDA.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, TokenizerKitError

__all__ = ["KMeansConfig", "train_kmeans", "nearest", "resolve_device", "faiss_num_gpus"]

logger = logging.getLogger(__name__)


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - install problem
        raise TokenizerKitError(
            "FAISS is not installed; `pip install tokenizer-kit[cpu]` (faiss-cpu) or "
            "`tokenizer-kit[gpu]` (faiss-gpu), never both"
        ) from None
    return faiss


def faiss_num_gpus() -> int:
    faiss = _faiss()
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _torch_cuda_available() -> bool:
    # importing torch costs ~2 s; only ask it when it is already loaded
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when FAISS or torch sees a GPU, else ``cpu``."""
    if device not in ("auto", "cpu", "cuda"):
        raise TokenizerKitError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return "cuda" if (faiss_num_gpus() > 0 or _torch_cuda_available()) else "cpu"
    if device == "cuda" and not (faiss_num_gpus() > 0 or _torch_cuda_available()):
        raise TokenizerKitError("device 'cuda' requested but no GPU is visible; use --device cpu or auto")
    return device


@dataclass
class KMeansConfig:
    niter: int = 20
    seed: int = 1234
    max_points_per_centroid: int = 256
    nredo: int = 1


def train_kmeans(x: np.ndarray, k: int, cfg: KMeansConfig, *, device: str = "cpu") -> np.ndarray:
    """FAISS k-means on ``x`` (n, d) -> centroids (k, d) float32.

    Uses every GPU FAISS sees when ``device == 'cuda'`` and FAISS has GPU support.
    """
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype="float32")
    n, d = x.shape
    if n < k:
        raise InputError(f"k-means needs at least k={k} points, got {n}")
    use_gpu = device == "cuda" and faiss_num_gpus() > 0
    if device == "cuda" and not use_gpu:
        logger.warning("FAISS has no GPU support here (faiss-cpu); k-means runs on the CPU")
    km = faiss.Kmeans(
        d,
        k,
        niter=cfg.niter,
        seed=cfg.seed,
        nredo=cfg.nredo,
        max_points_per_centroid=cfg.max_points_per_centroid,
        # below 39 points per centroid FAISS prints a warning to stderr; the library never
        # prints, and the tokenizer checks sizes itself
        min_points_per_centroid=1,
        verbose=False,
        gpu=use_gpu,
        spherical=False,
    )
    km.train(x)
    return np.ascontiguousarray(km.centroids, dtype=np.float32).reshape(k, d)


def nearest(
    r: np.ndarray,
    centroids: np.ndarray,
    *,
    cnorm: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    k: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Closest ``k`` centroids for each row of ``r`` (b, d) under ``||r - c||^2 + bias``.

    Returns (scores (b, k) float32, ids (b, k) int64), ascending by score. Scores are the
    full squared distances (``||r||^2`` included) plus the bias.
    """
    if cnorm is None:
        cnorm = (centroids * centroids).sum(1)
    offset = cnorm if bias is None else cnorm + bias
    dist = r @ centroids.T  # [b, K] the GEMM
    dist *= -2.0
    dist += offset[None, :]
    if k == 1:
        ids = dist.argmin(1)[:, None]
    else:
        kk = min(k, dist.shape[1])
        part = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
        order = np.take_along_axis(dist, part, 1).argsort(1, kind="stable")
        ids = np.take_along_axis(part, order, 1)
    scores = np.take_along_axis(dist, ids, 1)
    scores += np.einsum("ij,ij->i", r, r)[:, None]
    return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)
