"""Quantizers: the k-means engine, the exact nearest-code rule, RQ-Kmeans, RQ-VAE, and the method registry."""

from .._exports import lazy_exports
from ._base import Quantizer, get_config_class, get_quantizer_class, list_methods, register_quantizer
from ._exact import exact_sqdist
from ._kmeans import KMeansConfig, faiss_num_gpus, kmeans_device, nearest, resolve_device, train_kmeans
from ._rq_kmeans import RQKMeans, RQKMeansConfig, parse_codebook_sizes, suggest_codebook_size
from ._rq_vae_config import RQVAEConfig

__all__ = [
    "BLOCK_ROWS",
    "KMeansConfig",
    "PlanConfig",
    "Quantizer",
    "RQKMeans",
    "RQKMeansConfig",
    "RQVAE",
    "RQVAEConfig",
    "exact_sqdist",
    "faiss_num_gpus",
    "get_config_class",
    "get_quantizer_class",
    "list_methods",
    "nearest",
    "parse_codebook_sizes",
    "plan",
    "register_quantizer",
    "resolve_device",
    "kmeans_device",
    "suggest_codebook_size",
    "train_kmeans",
    "warn_if_crowded",
]


# RQ-VAE imports torch (seconds); load it on first use so RQ-Kmeans stays light; the encode
# loop's block size and the capacity planner load on first use too
_LAZY = {
    "RQVAE": "._rq_vae",
    "BLOCK_ROWS": "._encode",
    "PlanConfig": "._plan", "plan": "._plan", "warn_if_crowded": "._plan",
}
__getattr__ = lazy_exports(__name__, _LAZY)
