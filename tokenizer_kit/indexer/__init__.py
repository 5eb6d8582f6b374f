"""Indexer: codes -> SIDs (collision policies), the SID trie, vocabulary, constrained decoding, cold start."""

from ._decoding import TrieLogitsProcessor, prefix_allowed_tokens_fn
from ._index import IndexConfig, SIDIndex, embedding_hash, read_lcrec_index
from ._policies import POLICIES, reassign_sids, suffix_sids
from ._trie import SIDTrie
from ._vocab import SIDVocab

__all__ = [
    "IndexConfig",
    "POLICIES",
    "SIDIndex",
    "embedding_hash",
    "read_lcrec_index",
    "reassign_sids",
    "suffix_sids",
    "SIDTrie",
    "SIDVocab",
    "TrieLogitsProcessor",
    "prefix_allowed_tokens_fn",
]
