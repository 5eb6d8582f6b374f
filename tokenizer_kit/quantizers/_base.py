"""The quantizer protocol and the registry of methods (``rq-kmeans``, ``rq-vae``, ...).

A quantizer maps vectors ``(n, d)`` to integer codes ``(n, L)`` and back. It speaks FAISS's
verbs (``fit``/``train``, ``encode``, ``decode``) and serialises as a JSON-able config plus a
flat dict of numpy arrays (stored with safetensors by the tokenizer artifact).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

__all__ = ["Quantizer", "register_quantizer", "get_quantizer_class", "list_methods"]


@runtime_checkable
class Quantizer(Protocol):
    method: ClassVar[str]

    @property
    def codebook_sizes(self) -> list[int]: ...

    @property
    def dim(self) -> int: ...

    def fit(self, x: np.ndarray) -> "Quantizer":
        """Train on ``x`` (n, d) float32."""

    def encode(self, x: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Codes ``(n, L)`` int64 for ``x`` (n, d)."""

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstructions ``(n, d)`` float32 for ``codes`` (n, L)."""

    def config_dict(self) -> dict[str, Any]:
        """JSON-able config that ``from_state`` takes back."""

    def state_tensors(self) -> dict[str, np.ndarray]:
        """Named arrays (saved with safetensors)."""

    def summary(self) -> dict[str, Any]:
        """JSON-able training summary recorded in the manifest (times, losses, ...)."""

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> "Quantizer": ...


_REGISTRY: dict[str, type] = {}


def register_quantizer(cls):
    """Class decorator: make ``cls`` buildable by ``cls.method`` (CLI ``--method``)."""
    _REGISTRY[cls.method] = cls
    return cls


def get_quantizer_class(method: str) -> type:
    from ..errors import TokenizerKitError

    if method not in _REGISTRY:
        # late registration of optional methods
        from . import _lazy_methods  # noqa: F401

    if method not in _REGISTRY:
        raise TokenizerKitError(
            f"unknown quantizer method {method!r}; choose one of {sorted(_REGISTRY)}"
        )
    return _REGISTRY[method]


def list_methods() -> list[str]:
    from . import _lazy_methods  # noqa: F401

    return sorted(_REGISTRY)
