"""The quantizer protocol and the registry of methods (``rq-kmeans``, ``rq-vae``, ...).

A quantizer maps vectors ``(n, d)`` to integer codes ``(n, L)`` and back. It speaks FAISS's
verbs (``fit``/``train``, ``encode``, ``decode``) and serialises as a JSON-able config plus a
flat dict of numpy arrays (stored with safetensors by the tokenizer artifact).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

__all__ = ["Quantizer", "QuantizerBase", "get_config_class", "get_quantizer_class", "list_methods", "register_quantizer", "suggest_codebook_size"]


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

# the package's own methods: name -> ("module:Quantizer", "module:Config"), imported when a
# method is looked up, so naming, listing and configuring rq-kmeans never imports the torch of
# rq-vae; register_quantizer adds others
_BUILTIN = {
    "rq-kmeans": ("._rq_kmeans:RQKMeans", "._rq_kmeans:RQKMeansConfig"),
    "rq-vae": ("._rq_vae:RQVAE", "._rq_vae_config:RQVAEConfig"),
    "external": ("._external:ExternalCodes", "._external:ExternalCodesConfig"),
}
_NOT_BUILDABLE = ("external",)  # imported codes, no model


def register_quantizer(cls):
    """Class decorator: make ``cls`` buildable by ``cls.method`` (CLI ``--method``)."""
    _REGISTRY[cls.method] = cls
    return cls


def _resolve(spec: str) -> type:
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module, __package__), name)


def _known(method: str) -> None:
    from ..errors import TokenizerKitError

    if method not in _REGISTRY and method not in _BUILTIN:
        raise TokenizerKitError(f"unknown quantizer method {method!r}; choose one of {sorted({*_REGISTRY, *_BUILTIN})}")


def get_quantizer_class(method: str) -> type:
    """The quantizer class of ``method`` (importing its module: ``rq-vae``'s imports torch)."""
    _known(method)
    return _REGISTRY.get(method) or _resolve(_BUILTIN[method][0])


def get_config_class(method: str) -> type:
    """The config class of ``method`` (``RQKMeansConfig``, ``RQVAEConfig``, ...), without
    importing the quantizer's module: none of the configs imports torch."""
    _known(method)
    if method in _REGISTRY:
        return _REGISTRY[method].config_class
    return _resolve(_BUILTIN[method][1])


def list_methods() -> list[str]:
    """The methods a tokenizer can be built with (not ``external``: imported codes, no model)."""
    registered = {m for m, c in _REGISTRY.items() if getattr(c, "buildable", True)}
    return sorted(registered | (set(_BUILTIN) - set(_NOT_BUILDABLE)))
