"""Indexer: codes -> SIDs (collision policies), the SID trie, vocabulary, constrained decoding, cold start."""

from ..build import register_index_builder
from ._cold_start import BatchLookup, lookup_arrow, lookup_batch, lookup_columns
from ._ids import concat_ids
from ._import import import_sid_index
from ._index import IndexConfig, SIDIndex, embedding_hash, read_lcrec_index
from ._load import load_sid_index, load_sids
from ._on_disk import index_from_parts, index_on_disk, reassign_on_disk_refusal
from ._stream_assign import LOOKUP_ROW_GROUP, assign_to_file, lookup_part, place_lookups, write_lookup_rows
from .policies import POLICIES, CollisionPolicy, get_policy, reassign_sids, register_policy, suffix_sids
from ._trie import SIDTrie
from ._vocab import SIDVocab, add_sid_tokens

__all__ = [
    "BatchLookup",
    "CollisionPolicy",
    "IndexConfig",
    "LOOKUP_ROW_GROUP",
    "POLICIES",
    "SIDIndex",
    "assign_to_file",
    "concat_ids",
    "embedding_hash",
    "get_policy",
    "import_sid_index",
    "index_from_parts",
    "index_on_disk",
    "reassign_on_disk_refusal",
    "load_sid_index",
    "load_sids",
    "lookup_arrow",
    "lookup_columns",
    "lookup_batch",
    "lookup_part",
    "place_lookups",
    "read_lcrec_index",
    "reassign_sids",
    "register_policy",
    "suffix_sids",
    "write_lookup_rows",
    "SIDTrie",
    "SIDVocab",
    "add_sid_tokens",
    "TrieLogitsProcessor",
    "prefix_allowed_tokens_fn",
]


def _index_built(tok, x) -> None:
    """The index ``SemanticTokenizer.build`` attaches by default: build-codebook's (the default
    policy, numbered by input row, with each item's embedding fingerprint)."""
    idx = SIDIndex.for_tokenizer(tok)
    idx.emb_hash = embedding_hash(x)
    idx.attach(tok)


register_index_builder(_index_built)


def __getattr__(name):
    # constrained decoding imports torch (seconds); load it on first use
    if name in ("TrieLogitsProcessor", "prefix_allowed_tokens_fn"):
        from . import _decoding

        return getattr(_decoding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
