"""``SIDVocab``: SID tokens (``<a_3>``, ``<b_4>``, ..., the suffix level) <-> token ids.

Level ``l`` code ``c`` has id ``table[l, c]``. A fresh vocabulary numbers the levels one
after another from ``base`` (``offsets[l] = base + sum(level_sizes[:l])``); one read from a
Hugging Face tokenizer after ``add_tokens`` takes whatever ids that tokenizer gave.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..build import level_token, parse_sid_string
from ..errors import InputError

__all__ = ["SIDVocab", "add_sid_tokens"]


class SIDVocab:
    """Token ids of SID tokens, one block per level.

    >>> vocab = SIDVocab([256, 256, 256], base=3)   # ids 0..2 for pad/bos/eos
    >>> vocab.encode("<a_1><b_2><c_3>")               # [4, 261, 518]
    >>> vocab.decode([4, 261, 518])                   # '<a_1><b_2><c_3>'
    >>> vocab = add_sid_tokens(hf_tok, index, model)  # an LLM's tokenizer and embeddings, in one call
    """

    def __init__(self, level_sizes: Sequence[int], *, base: int = 0, table: np.ndarray | None = None):
        sizes = [int(s) for s in level_sizes]
        errors = []
        if not sizes:
            errors.append("level_sizes is empty (expected one size per SID level)")
        if any(s < 1 for s in sizes):
            errors.append(f"level_sizes must be >= 1, got {sizes}")
        if int(base) < 0:
            errors.append(f"base must be >= 0, got {base}")
        if errors:
            raise InputError("SIDVocab: " + "; ".join(errors))
        self.level_sizes = sizes
        self.base = int(base)
        kmax = max(sizes)
        if table is None:
            offsets = self.base + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            table = np.full((len(sizes), kmax), -1, np.int64)
            for l, s in enumerate(sizes):
                table[l, :s] = offsets[l] + np.arange(s)
        table = np.asarray(table, dtype=np.int64)
        if table.shape != (len(sizes), kmax):
            raise InputError(f"SIDVocab: table has shape {table.shape}, expected {(len(sizes), kmax)}")
        self.table = table  # [S, Kmax], -1 where level l has no code c
        valid = table[table >= 0]
        if len(np.unique(valid)) != len(valid):
            raise InputError("SIDVocab: two SID tokens share a token id; give each (level, code) its own id")
        self.vocab_end = int(valid.max()) + 1 if len(valid) else self.base
        self.id_level = np.full(self.vocab_end, -1, np.int64)  # [V] level of a token id, -1 if not a SID token
        self.id_code = np.full(self.vocab_end, -1, np.int64)  # [V] code of a token id
        lv, cd = np.nonzero(table >= 0)
        self.id_level[table[lv, cd]] = lv
        self.id_code[table[lv, cd]] = cd

    # ---- basics -----------------------------------------------------------------------------
    @property
    def levels(self) -> int:
        return len(self.level_sizes)

    @property
    def offsets(self) -> list[int]:
        return [int(self.table[l, 0]) for l in range(self.levels)]

    def __len__(self) -> int:
        return int(sum(self.level_sizes))

    def __repr__(self) -> str:
        return f"SIDVocab(level_sizes={self.level_sizes}, offsets={self.offsets})"

    def tokens(self) -> list[str]:
        """Every SID token, level by level (the order ``add_tokens`` should see)."""
        return [level_token(l, c) for l, s in enumerate(self.level_sizes) for c in range(s)]

    def token_id(self, level: int, code: int) -> int:
        if not (0 <= level < self.levels and 0 <= code < self.level_sizes[level]):
            raise InputError(
                f"no SID token for level {level} code {code}; this vocabulary has levels of sizes {self.level_sizes}"
            )
        return int(self.table[level, code])

    # ---- SID <-> ids --------------------------------------------------------------------------
    def encode(self, sid: str | Sequence[int]) -> list[int]:
        """SID string or codes -> token ids."""
        codes = parse_sid_string(sid) if isinstance(sid, str) else [int(c) for c in sid]
        if len(codes) > self.levels:
            raise InputError(f"SID has {len(codes)} levels, this vocabulary {self.levels}")
        return [self.token_id(l, c) for l, c in enumerate(codes)]

    def encode_batch(self, codes: np.ndarray) -> np.ndarray:
        """Codes (n, S) -> token ids (n, S)."""
        codes = np.asarray(codes, dtype=np.int64)
        S = codes.shape[1]
        if S > self.levels or (codes < 0).any() or (codes >= np.asarray(self.level_sizes[:S])).any():
            raise InputError(f"codes do not fit this vocabulary (levels of sizes {self.level_sizes})")
        return self.table[np.arange(S)[None, :], codes]

    def decode_codes(self, ids: Sequence[int]) -> list[int]:
        """Token ids of one SID -> codes; non-SID ids (pad, eos) are skipped; levels must come in order."""
        out = []
        for t in ids:
            t = int(t)
            if t < 0 or t >= self.vocab_end or self.id_level[t] < 0:
                continue
            if self.id_level[t] != len(out):
                raise InputError(f"token id {t} is level {int(self.id_level[t])} but position {len(out)} of the SID")
            out.append(int(self.id_code[t]))
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(level_token(l, c) for l, c in enumerate(self.decode_codes(ids)))

    # ---- interop --------------------------------------------------------------------------
    @classmethod
    def from_tokenizer(cls, hf_tokenizer, level_sizes: Sequence[int]) -> "SIDVocab":
        """Read the ids a Hugging Face tokenizer gave the SID tokens (after ``add_tokens(vocab.tokens())``)."""
        sizes = [int(s) for s in level_sizes]
        table = np.full((len(sizes), max(sizes)), -1, np.int64)
        unk = getattr(hf_tokenizer, "unk_token_id", None)
        missing = []
        for l, s in enumerate(sizes):
            toks = [level_token(l, c) for c in range(s)]
            ids = hf_tokenizer.convert_tokens_to_ids(toks)
            for c, (tok, i) in enumerate(zip(toks, ids)):
                if i is None or (unk is not None and i == unk):
                    missing.append(tok)
                else:
                    table[l, c] = int(i)
        if missing:
            raise InputError(
                f"the tokenizer lacks {len(missing)} SID tokens (first {missing[0]}); call "
                "tokenizer.add_tokens(SIDVocab(level_sizes).tokens()) and resize the model's embeddings"
            )
        return cls(sizes, base=int(table[table >= 0].min()), table=table)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "tokenizer-kit-sid-vocab",
            "level_sizes": self.level_sizes,
            "offsets": self.offsets,
            "base": self.base,
            "vocab": {tok: int(self.table[l, c]) for l, s in enumerate(self.level_sizes) for c, tok in
                      enumerate(level_token(l, k) for k in range(s))},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Vocab JSON: {"vocab": {token: id}, "level_sizes", "offsets"} (feed ``vocab`` keys to ``add_tokens``)."""
        from ..io import atomic_write_json

        atomic_write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SIDVocab":
        sizes = d.get("level_sizes")
        vocab = d.get("vocab")
        if not isinstance(sizes, list) or not isinstance(vocab, dict):
            raise InputError("SID vocab JSON: expected keys 'level_sizes' (list) and 'vocab' (token -> id)")
        table = np.full((len(sizes), max(sizes)), -1, np.int64)
        for l, s in enumerate(sizes):
            for c in range(s):
                tok = level_token(l, c)
                if tok not in vocab:
                    raise InputError(f"SID vocab JSON lacks token {tok}")
                table[l, c] = int(vocab[tok])
        return cls(sizes, base=int(d.get("base", table[table >= 0].min())), table=table)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SIDVocab":
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e.msg})") from None
        return cls.from_dict(d)


def add_sid_tokens(hf_tokenizer, index, model=None, **resize_kwargs) -> SIDVocab:
    """Add every SID token of ``index`` to a Hugging Face tokenizer and resize ``model``'s embeddings.

    ``index``: a ``SIDIndex`` (or anything with ``level_sizes``, or the level sizes
    themselves), the suffix level included. Tokens the tokenizer already has keep their ids
    (run it again after a cold start grew the suffix level). ``model``: a transformers model
    whose token embeddings (and tied output layer) grow to ``len(hf_tokenizer)``;
    ``resize_kwargs`` go to ``model.resize_token_embeddings`` (e.g. ``pad_to_multiple_of``).
    Returns the ``SIDVocab`` with the ids the tokenizer gave, for ``TrieLogitsProcessor``.

    >>> vocab = add_sid_tokens(hf_tok, idx, model)
    >>> proc = TrieLogitsProcessor(idx.trie, vocab, eos_token_id=hf_tok.eos_token_id)
    """
    sizes = [int(k) for k in getattr(index, "level_sizes", index)]
    hf_tokenizer.add_tokens(SIDVocab(sizes).tokens())
    if model is not None:
        model.resize_token_embeddings(len(hf_tokenizer), **resize_kwargs)
    return SIDVocab.from_tokenizer(hf_tokenizer, sizes)
