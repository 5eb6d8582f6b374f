"""Indexer: codes -> SIDs (collision policies), the SID trie, vocabulary, constrained decoding, cold start."""

from ._decoding import TrieLogitsProcessor, prefix_allowed_tokens_fn
from ._trie import SIDTrie
from ._vocab import SIDVocab

__all__ = [
    "SIDTrie",
    "SIDVocab",
    "TrieLogitsProcessor",
    "prefix_allowed_tokens_fn",
]
