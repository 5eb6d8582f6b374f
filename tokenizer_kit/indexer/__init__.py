"""Indexer: codes -> SIDs (collision policies), the SID trie, vocabulary, constrained decoding, cold start."""

from ._cold_start import BatchLookup, lookup_arrow, lookup_batch
from ._import import import_sid_index
from ._index import IndexConfig, SIDIndex, embedding_hash, read_lcrec_index
from ._load import load_sids
from .policies import POLICIES, CollisionPolicy, get_policy, reassign_sids, register_policy, suffix_sids
from ._trie import SIDTrie
from ._vocab import SIDVocab, add_sid_tokens

__all__ = [
    "BatchLookup",
    "CollisionPolicy",
    "IndexConfig",
    "POLICIES",
    "SIDIndex",
    "embedding_hash",
    "get_policy",
    "import_sid_index",
    "load_sids",
    "lookup_arrow",
    "lookup_batch",
    "read_lcrec_index",
    "reassign_sids",
    "register_policy",
    "suffix_sids",
    "SIDTrie",
    "SIDVocab",
    "add_sid_tokens",
    "TrieLogitsProcessor",
    "prefix_allowed_tokens_fn",
]


def __getattr__(name):
    # constrained decoding imports torch (seconds); load it on first use
    if name in ("TrieLogitsProcessor", "prefix_allowed_tokens_fn"):
        from . import _decoding

        return getattr(_decoding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
