"""``external``: SIDs made by another tool (an LC-Rec / LETTER / MiniOneRec ``*.index.json``),
held as codes without a model, so an imported index gets the indexer's collision policies,
trie, lookups, cold start (new items come with their codes) and constrained decoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._config import ValidatedConfig, setting
from ..errors import InputError
from ._base import QuantizerBase, register_quantizer

__all__ = ["ExternalCodes", "ExternalCodesConfig"]


@dataclass
class ExternalCodesConfig(ValidatedConfig):
    label: ClassVar[str] = "external codes"
    error_type: ClassVar[type[InputError]] = InputError

    codebook_sizes: list[int] = setting(help="Codes per level of the imported SIDs.", default_factory=list, bounds=(1, None), nonempty=True)
    source: str = setting("", help="The file the SIDs were imported from.")


@register_quantizer
class ExternalCodes(QuantizerBase):
    """Codes of another tool's SIDs: nothing to fit or encode; every code decodes to the same
    (zero, 1-d) point, so policies that rank by reconstruction error take the first free SID."""

    method: ClassVar[str] = "external"
    config_class: ClassVar[type] = ExternalCodesConfig
    describe: ClassVar[str] = "imported SID index"
    buildable: ClassVar[bool] = False

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self._dim = 1

    @property
    def is_fitted(self) -> bool:
        return True

    def _no_model(self):
        src = f" from {self.config.source}" if self.config.source else ""
        return InputError(
            f"this tokenizer holds SIDs imported{src}; it has no model to encode embeddings: give new items their codes "
            "(an *.index.json of the new items: `tokenizer-kit assign NEW.index.json --tokenizer DIR`, or SIDIndex.assign(codes=...))"
        )

    def fit(self, x: np.ndarray) -> "ExternalCodes":
        raise self._no_model()

    def encode(self, x: np.ndarray, *, batch_size: int | None = None, **kwargs) -> np.ndarray:
        raise self._no_model()

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.zeros((len(self._check_codes(codes)), 1), np.float32)

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> "ExternalCodes":
        config = dict(config)
        config.pop("dim", None)
        return cls(ExternalCodesConfig.from_dict(config))
