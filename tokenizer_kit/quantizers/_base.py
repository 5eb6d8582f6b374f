"""The quantizer protocol and the registry of methods (``rq-kmeans``, ``rq-vae``, ...).

A quantizer maps vectors ``(n, d)`` to integer codes ``(n, L)`` and back. It speaks FAISS's
verbs (``fit``/``train``, ``encode``, ``decode``) and serialises as a JSON-able config plus a
flat dict of numpy arrays (stored with safetensors by the tokenizer artifact).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

__all__ = ["Quantizer", "QuantizerBase", "suggest_codebook_size", "register_quantizer", "get_quantizer_class", "list_methods"]


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


def suggest_codebook_size(n: int) -> int:
    """A power of two that leaves at least ~4 items per code."""
    import math

    return max(2, 2 ** int(math.floor(math.log2(max(n // 4, 2)))))


class QuantizerBase:
    """What every residual quantizer shares: config handling, sizes, input and code checks.

    Subclasses set ``config_class`` (a dataclass with ``from_dict`` / ``validate`` and a
    ``codebook_sizes`` field), ``describe`` (how errors name the model) and ``is_fitted``.
    """

    config_class: ClassVar[type]
    describe: ClassVar[str] = "quantizer"

    def __init__(self, config=None, **kwargs):
        from dataclasses import asdict

        cls = self.config_class
        if config is None:
            config = cls.from_dict(kwargs)
        elif kwargs:
            config = cls.from_dict({**asdict(config), **kwargs})
        self.config = config.validate()
        self._dim: int | None = None
        self.fit_codes_: np.ndarray | None = None
        self._summary: dict[str, Any] = {}

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.config.codebook_sizes)

    @property
    def levels(self) -> int:
        return len(self.config.codebook_sizes)

    @property
    def dim(self) -> int:
        if self._dim is None:
            from ..errors import TokenizerKitError

            raise TokenizerKitError("quantizer is not fitted; call fit(x) first")
        return self._dim

    @property
    def is_fitted(self) -> bool:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            from ..errors import TokenizerKitError

            raise TokenizerKitError("quantizer is not fitted; call fit(x) or load a tokenizer")

    def _check_input(self, x: np.ndarray, what: str) -> np.ndarray:
        """``x`` must be (n, d) with the fitted ``d``."""
        from ..errors import InputError

        if not isinstance(x, np.ndarray) or x.ndim != 2:
            raise InputError(f"{what}: expected an array of shape (n, d), got {getattr(x, 'shape', None)}")
        if self._dim is not None and x.shape[1] != self._dim:
            raise InputError(
                f"{what}: vectors have dimension {x.shape[1]} but the {self.describe} expects {self._dim}; "
                "use embeddings from the same model the tokenizer was built on"
            )
        return x

    def _check_fit_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` must be (n, d) with at least as many items as the largest codebook."""
        from ..errors import InputError

        x = self._check_input(x, "fit")
        n, kmax = x.shape[0], max(self.config.codebook_sizes)
        if n < kmax:
            raise InputError(
                f"too few items for the codebook: a level of {kmax} codes needs at least {kmax} items, "
                f"got {n}; set `codebook_sizes` to {suggest_codebook_size(n)} or fewer"
            )
        return x

    def _check_codes(self, codes) -> np.ndarray:
        """``codes`` must be (n, L) with level l in [0, K_l)."""
        from ..errors import InputError

        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.levels:
            raise InputError(f"decode: expected codes of shape (n, {self.levels}), got {codes.shape}")
        for level, k in enumerate(self.codebook_sizes):
            col = codes[:, level]
            if col.size and (col.min() < 0 or col.max() >= k):
                raise InputError(f"decode: level {level} codes must be in [0, {k}), got range [{col.min()}, {col.max()}]")
        return codes

    def config_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self.config)
        d["dim"] = self._dim
        return d

    def summary(self) -> dict[str, Any]:
        return dict(self._summary)


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
    """The methods a tokenizer can be built with (not ``external``: imported codes, no model)."""
    from . import _lazy_methods  # noqa: F401

    return sorted(m for m, c in _REGISTRY.items() if getattr(c, "buildable", True))
