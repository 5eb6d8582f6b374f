"""Imports every module that registers a quantizer method, so the registry is complete."""

from . import _external, _rq_kmeans  # noqa: F401

try:  # RQ-VAE needs torch; keep RQ-Kmeans usable without it
    from . import _rq_vae  # noqa: F401
except ImportError:  # pragma: no cover - module not present or torch missing
    pass
