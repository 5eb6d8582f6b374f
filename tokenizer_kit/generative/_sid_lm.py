"""SIDs into a Hugging Face causal LM: the tokenizer and model with every SID token, and items <-> text.

``sid_causal_lm(tokenizer_dir, model=...)`` adds one token per (level, code) (``<a_3>``,
``<b_4>``, ..., the suffix level last; ``add_tokens``), grows the embeddings
(``resize_token_embeddings``) and initialises the new rows (:mod:`._init`). ``save(dir)``
writes a plain ``save_pretrained`` directory (safetensors) plus ``sid_items.json`` (every
item's SID and the SID token ids), so ``AutoModelForCausalLM.from_pretrained(dir)`` and
``AutoTokenizer.from_pretrained(dir)`` load it anywhere and :meth:`SIDCausalLM.load` also
gets the item mapping back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from .._config import ValidatedConfig, setting
from ..build import sid_string
from ..errors import ArtifactError, InputError

__all__ = ["INITS", "SIDCausalLM", "SIDLMConfig", "sid_causal_lm", "tokenizer_codebooks", "MAPPING_NAME"]

logger = logging.getLogger(__name__)

INITS = ("mean", "codebook")  # the SID tokens' initial embeddings (``._init``)
MAPPING_NAME = "sid_items.json"
FORMAT = "tokenizer-kit-sid-lm"
FORMAT_VERSION = 1
_TOKEN = re.compile(r"<(?:([a-z])|l(\d+))_(\d+)>")


@dataclass
class SIDLMConfig(ValidatedConfig):
    """Which causal LM gets the SID tokens and how their embeddings start."""

    label: ClassVar[str] = "sid-lm"
    error_type: ClassVar[type[InputError]] = InputError

    model: str = setting("smollm2", help="Causal LM: an HF model directory, DIR::FILE.gguf, or smollm2 (the offline SmolLM2-135M).")
    sid_init: str = setting("mean", help="SID token embeddings: mean (of the existing ones, plus noise) or codebook "
                            "(the codebook vectors through a fixed random orthonormal projection, scaled to the embeddings' spread).",
                            choices=INITS)
    init_noise: float = setting(0.1, help="Noise of the mean initialisation, in units of the embeddings' per-dimension std.", bounds=(0, None))
    seed: int = setting(0, help="Seed of the initialisation noise and projections.", bounds=(0, 2**30))


class SIDCausalLM:
    """A causal LM whose tokenizer holds every SID token, and the items those SIDs stand for.

    ``model`` / ``tokenizer``: the transformers objects; ``vocab``: the ``SIDVocab`` with the
    ids the tokenizer gave; ``item_ids`` (n,) and ``sids`` (n, S) codes. An SID shared by
    several items stands for the first of them (index order).

    >>> lm = sid_causal_lm("tok/", model="smollm2")
    >>> lm.items_to_text(["B0001", "B0002"])           # '<a_3><b_1><c_7><d_0><a_..>...'
    >>> lm.text_to_items("<a_3> <b_1> <c_7> <d_0></s>")  # ['B0001']
    >>> lm.save("smollm2-sids/")                        # save_pretrained + sid_items.json
    """

    def __init__(self, model, tokenizer, vocab, item_ids: Sequence, sids: np.ndarray, *, extra: dict[str, Any] | None = None):
        self.model, self.tokenizer, self.vocab = model, tokenizer, vocab
        self.extra = dict(extra or {})  # more JSON kept in sid_items.json (e.g. the companion's config)
        self.item_ids = np.asarray(list(item_ids), dtype=object)
        self.sids = np.asarray(sids, np.int64).reshape(len(self.item_ids), -1)  # [n, S]
        self._item_of: dict[tuple[int, ...], Any] = {}
        for item, sid in zip(self.item_ids.tolist(), map(tuple, self.sids.tolist())):
            self._item_of.setdefault(sid, item)
        self._row = {str(i): r for r, i in enumerate(self.item_ids.tolist())}

    @property
    def sid_length(self) -> int:
        return int(self.sids.shape[1])

    @property
    def sid_token_ids(self) -> list[int]:
        """Token ids of every SID token, ascending."""
        t = self.vocab.table
        return sorted(int(i) for i in t[t >= 0].tolist())

    def item_token_ids(self) -> np.ndarray:
        """Token ids of every item's SID (n, S), index order."""
        return self.vocab.encode_batch(self.sids)

    # ---- items <-> text -------------------------------------------------------------------
    def items_to_text(self, item_ids: Sequence, *, sep: str = "") -> str:
        """The SIDs of ``item_ids`` as text (``<a_3><b_1><c_7>``), joined by ``sep``."""
        missing = [i for i in item_ids if str(i) not in self._row]
        if missing:
            raise InputError(f"{len(missing)} item(s) have no SID here (first {missing[0]!r}); pass ids of the indexed catalogue")
        return sep.join(sid_string(self.sids[self._row[str(i)]].tolist()) for i in item_ids)

    def text_to_items(self, text: str) -> list:
        """Every SID written in ``text`` -> its item id, in order; None for an SID no item has,
        or a partial one (levels missing or out of order). Whitespace and other tokens
        (``</s>``, ``<|im_end|>``) between SID tokens are ignored."""
        out: list = []
        cur: list[int] | None = None  # codes of the SID being read; None: skipping a broken one
        for m in _TOKEN.finditer(text):
            level = ord(m.group(1)) - ord("a") if m.group(1) else int(m.group(2))
            code = int(m.group(3))
            if level == 0:
                if cur:
                    out.append(None)  # the previous SID stopped short
                cur = [code]
            elif cur is not None and level == len(cur):
                cur.append(code)
            else:
                if cur:
                    out.append(None)
                cur = None
                continue
            if len(cur) == self.sid_length:
                out.append(self._item_of.get(tuple(cur)))
                cur = []
        if cur:
            out.append(None)
        return out

    def token_ids_to_items(self, token_ids: Sequence[int]) -> list:
        """Generated token ids -> item ids (as :meth:`text_to_items` on their decoded text)."""
        return self.text_to_items(self.tokenizer.decode(list(map(int, token_ids)), skip_special_tokens=False))

    # ---- persistence ------------------------------------------------------------------------
    def mapping(self) -> dict[str, Any]:
        from .._version import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "level_sizes": self.vocab.level_sizes,
            "sid_length": self.sid_length,
            "vocab": self.vocab.to_dict()["vocab"],
            "item_ids": self.item_ids.tolist(),
            "sids": self.sids.tolist(),
            **self.extra,
        }

    def save(self, path: str | os.PathLike, *, overwrite: bool = True, extra: dict[str, Any] | None = None) -> Path:
        """``save_pretrained`` of the model (safetensors) and tokenizer, plus ``sid_items.json``
        (with ``extra`` JSON), switched in atomically."""
        from ..io import atomic_directory, atomic_write_json

        self.extra.update(extra or {})
        with atomic_directory(path, overwrite=overwrite) as stage:
            self.model.save_pretrained(stage)
            self.tokenizer.save_pretrained(stage)
            atomic_write_json(Path(stage) / MAPPING_NAME, self.mapping())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> "SIDCausalLM":
        """A directory :meth:`save` wrote; the SID token ids must be the tokenizer's."""
        from ..indexer import SIDVocab
        from ..alignment import open_causal_lm

        m = _read_mapping(Path(path))
        model, tok = open_causal_lm(str(path), device=device, option="the directory")
        vocab = SIDVocab.from_tokenizer(tok, m["level_sizes"])
        if vocab.to_dict()["vocab"] != m["vocab"]:
            raise ArtifactError(f"{path}: the tokenizer's SID token ids differ from {MAPPING_NAME}'s; save the model and tokenizer together")
        known = {"format", "format_version", "package_version", "level_sizes", "sid_length", "vocab", "item_ids", "sids"}
        return cls(model, tok, vocab, m["item_ids"], np.asarray(m["sids"], np.int64), extra={k: v for k, v in m.items() if k not in known})


def _read_mapping(path: Path) -> dict[str, Any]:
    f = path / MAPPING_NAME
    if not f.is_file():
        raise ArtifactError(f"{path} has no {MAPPING_NAME}; it was not written by SIDCausalLM.save (tokenizer-kit sid-lm)")
    try:
        m = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{f}: not valid JSON ({e.msg})") from None
    if m.get("format") != FORMAT or not all(k in m for k in ("level_sizes", "vocab", "item_ids", "sids")):
        raise ArtifactError(f"{f}: not a {FORMAT} mapping (expected level_sizes, vocab, item_ids and sids)")
    if int(m.get("format_version", 0)) > FORMAT_VERSION:
        logger.warning("%s was written by a newer tokenizer-kit (format %s > %d)", f, m.get("format_version"), FORMAT_VERSION)
    return m


def tokenizer_codebooks(sids) -> list[np.ndarray]:
    """The codebooks (K_l, d) of a tokenizer directory's quantizer, for ``sid_init="codebook"``."""
    from ..build import SemanticTokenizer
    from ._init import codebook_vectors

    if not isinstance(sids, (str, os.PathLike)) or not Path(sids).is_dir():
        raise InputError("sid_init 'codebook' needs a tokenizer directory (its codebooks), not an index file or object; use sid_init 'mean'")
    return codebook_vectors(SemanticTokenizer.from_pretrained(sids).quantizer)


def _grow(model, tokenizer, index) -> tuple[Any, int, list[tuple[np.ndarray, np.ndarray]]]:
    """Add the SID tokens and grow the embeddings: (vocab, rows before, per level (new ids, their codes))."""
    from ..indexer import add_sid_tokens

    n_old = min(len(tokenizer), model.get_input_embeddings().num_embeddings)
    vocab = add_sid_tokens(tokenizer, index)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    rows = []
    for l, k in enumerate(vocab.level_sizes):
        ids = vocab.table[l, :k]
        new = ids >= n_old  # tokens the tokenizer had already keep their (trained) rows
        rows.append((ids[new], np.arange(k)[new]))
    return vocab, n_old, rows


def sid_causal_lm(sids, model: "str | os.PathLike | tuple | None" = None, *, config: SIDLMConfig | dict | None = None,
                  device: str = "cpu", codebooks: Sequence[np.ndarray] | None = None, **overrides: Any) -> SIDCausalLM:
    """A causal LM and its tokenizer with every SID token of ``sids`` added and initialised.

    ``sids``: a tokenizer directory (needed for ``sid_init="codebook"``), an LC-Rec
    ``*.index.json`` or a ``SIDIndex``. ``model``: an HF causal LM directory,
    ``DIR::FILE.gguf``, ``"smollm2"`` (offline SmolLM2-135M, the default), or a
    ``(model, tokenizer)`` pair (changed in place); None: ``config.model``. ``config`` / ``overrides``: :class:`SIDLMConfig` settings
    (``sid_init``, ``init_noise``, ``seed``). ``codebooks``: (K_l, d) per level for
    ``sid_init="codebook"`` when ``sids`` is not the tokenizer directory.
    """
    from ..alignment import open_causal_lm
    from ..indexer import load_sid_index
    from ._init import init_sid_rows

    base = dataclasses.asdict(config) if isinstance(config, SIDLMConfig) else dict(config or {})
    named = {} if model is None or isinstance(model, tuple) else {"model": str(model)}
    cfg = SIDLMConfig.from_dict({**base, **overrides, **named})
    index = load_sid_index(sids)
    books = None
    if cfg.sid_init == "codebook":
        books = list(codebooks) if codebooks is not None else tokenizer_codebooks(sids)
    lm, tok = model if isinstance(model, tuple) else open_causal_lm(cfg.model, device=device, option="`model`")
    vocab, n_old, rows = _grow(lm, tok, index)
    init_sid_rows(lm, rows, n_old, init=cfg.sid_init, codebooks=books, noise=cfg.init_noise, seed=cfg.seed)
    logger.info("added %d SID tokens (%d new) to a %d-token vocabulary", len(vocab), sum(len(r[0]) for r in rows), n_old)
    return SIDCausalLM(lm, tok, vocab, index.item_ids, index.sids)
