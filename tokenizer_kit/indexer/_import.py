"""Another tool's SIDs (LC-Rec / LETTER / MiniOneRec ``*.index.json``) as a collision-free index.

The imported SIDs become the codes of a tokenizer without a model (quantizer ``external``);
a collision policy makes them one item per SID, and the directory then works like one built
here: lookups, the trie and constrained decoding, and cold start of new items that come with
their codes from the other tool (``SIDIndex.assign(tok, ids, codes=...)``).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .._tokenizer import SemanticTokenizer
from ..errors import InputError
from ..quantizers import get_quantizer_class
from ._index import IndexConfig, SIDIndex, read_lcrec_index
from .policies import get_policy

__all__ = ["import_sid_index"]


def _codes_and_sizes(sids: np.ndarray, levels: int | None, codebook_sizes: Sequence[int] | None) -> tuple[np.ndarray, list[int]]:
    S = sids.shape[1]
    L = S if levels is None else int(levels)
    if not 1 <= L <= S:
        raise InputError(f"levels must be between 1 and the SIDs' length {S}, got {levels}")
    codes = np.asarray(sids[:, :L], np.int64)
    top = (codes.max(0) + 1).tolist() if len(codes) else [1] * L
    if codebook_sizes is None:
        return codes, [int(k) for k in top]
    sizes = [int(k) for k in codebook_sizes]
    sizes = sizes * L if len(sizes) == 1 else sizes
    if len(sizes) != L or any(k < t for k, t in zip(sizes, top)):
        raise InputError(f"codebook_sizes {list(codebook_sizes)} do not hold the imported codes (largest + 1 per level: {top}); "
                         "give one size per level, each above the largest code")
    return codes, sizes


def import_sid_index(
    path: str | os.PathLike,
    *,
    config: IndexConfig | None = None,
    levels: int | None = None,
    codebook_sizes: Sequence[int] | None = None,
) -> tuple[SemanticTokenizer, SIDIndex]:
    """(tokenizer, index) for the SIDs in ``path``; save with ``index.save(tok, out_dir)``.

    ``levels``: how many leading SID levels are codes (default all; a tool's own
    disambiguation level can be dropped and resolved again by the policy).
    ``codebook_sizes``: codes per level (default: largest code + 1), room for new items' codes.
    """
    config = (config or IndexConfig()).validate()
    ids, sids = read_lcrec_index(path)
    codes, sizes = _codes_and_sizes(sids, levels, codebook_sizes)
    quantizer = get_quantizer_class("external")(codebook_sizes=sizes, source=os.fspath(path))
    tok = SemanticTokenizer(quantizer, item_ids=ids, codes=codes, info={"source": os.fspath(path), "n_items": int(len(ids)),
                                                                       "imported_levels": int(codes.shape[1])})
    tok.metrics = tok.evaluate(codes=codes)
    x = np.zeros((len(codes), 1), np.float32) if get_policy(config.policy).needs_vectors else None
    idx = SIDIndex.build(ids, codes, codebook_sizes=sizes, config=config, x=x, decode=tok.decode if x is not None else None)
    return tok, idx
