"""Quantizers: FAISS k-means engine, RQ-Kmeans, RQ-VAE, and the method registry."""

from ._base import Quantizer, get_quantizer_class, list_methods, register_quantizer
from ._kmeans import KMeansConfig, faiss_num_gpus, nearest, resolve_device, train_kmeans
from ._rq_kmeans import RQKMeans, RQKMeansConfig, parse_codebook_sizes, suggest_codebook_size

__all__ = [
    "KMeansConfig",
    "Quantizer",
    "RQKMeans",
    "RQKMeansConfig",
    "faiss_num_gpus",
    "get_quantizer_class",
    "list_methods",
    "nearest",
    "parse_codebook_sizes",
    "register_quantizer",
    "resolve_device",
    "suggest_codebook_size",
    "train_kmeans",
]
