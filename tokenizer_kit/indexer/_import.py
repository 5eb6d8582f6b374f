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

from ..build import SemanticTokenizer
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

    Importing SIDs that are already one item per SID is the identity: under the ``suffix``
    policy (with ``levels`` left out) their last level is taken as the suffix level, as in an
    index exported from here, so every item keeps its SID and no level is added; new items
    then get the next free value of that level under their prefix. SIDs that collide get a
    suffix level of their own (``levels`` + 1 tokens).
    """
    config = (config or IndexConfig()).validate()
    ids, sids = read_lcrec_index(path)
    S = sids.shape[1]
    if config.policy == "suffix" and levels is None and S >= 2 and len(np.unique(sids, axis=0)) == len(sids):
        return _as_suffix_index(path, ids, sids, config, codebook_sizes)
    codes, sizes = _codes_and_sizes(sids, levels, codebook_sizes)
    tok = _tokenizer(path, ids, codes, sizes)
    x = np.zeros((len(codes), 1), np.float32) if get_policy(config.policy).needs_vectors else None
    idx = SIDIndex.build(ids, codes, codebook_sizes=sizes, config=config, x=x, decode=tok.decode if x is not None else None)
    return tok, idx


def _tokenizer(path, ids: np.ndarray, codes: np.ndarray, sizes: list[int]) -> SemanticTokenizer:
    quantizer = get_quantizer_class("external")(codebook_sizes=sizes, source=os.fspath(path))
    tok = SemanticTokenizer(quantizer, item_ids=ids, codes=codes, info={"source": os.fspath(path), "n_items": int(len(ids)),
                                                                       "imported_levels": int(codes.shape[1])})
    tok.metrics = tok.evaluate(codes=codes)
    return tok


def _as_suffix_index(path, ids: np.ndarray, sids: np.ndarray, config: IndexConfig,
                     codebook_sizes: Sequence[int] | None) -> tuple[SemanticTokenizer, SIDIndex]:
    """Distinct SIDs (n, S) under the suffix policy: codes = the first S-1 levels, the last
    level the suffix, every SID as given."""
    import time

    from ._index import _build_stats
    from .policies._base import Resolution

    codes, sizes = _codes_and_sizes(sids, sids.shape[1] - 1, codebook_sizes)
    tok = _tokenizer(path, ids, codes, sizes)
    top = int(sids[:, -1].max()) + 1 if len(sids) else 0
    res = Resolution(sids=sids, moved=np.zeros(len(sids), bool), extra=np.zeros(len(sids)), suffix_size=max(top, config.suffix_reserve),
                     stats={"max_suffix": top, "suffix_from": "the imported SIDs' last level"})
    idx = SIDIndex(item_ids=ids, sids=sids, raw_codes=codes, codebook_sizes=sizes, policy="suffix", suffix_size=res.suffix_size,
                   stats=_build_stats(get_policy("suffix"), codes, res, None, None, 0.0))
    t0 = time.perf_counter()
    trie = idx.trie
    idx.stats.update(trie_build_seconds=time.perf_counter() - t0, trie_nodes=trie.n_nodes, trie_bytes=trie.nbytes)
    return tok, idx
