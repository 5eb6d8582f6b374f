"""Build: the tokenizer artifact (``SemanticTokenizer``), its in-memory and streaming builds,
the streaming assign, and the metrics both report. ``build(source, config)`` picks the route.

Names load on first use (PEP 562): importing the package (the indexer does, for the SID
helpers) costs no numpy, pyarrow or FAISS until a name that needs them is asked for.
"""

from .._exports import lazy_exports

_LAZY = {
    "build": "._build",
    "TOKENIZER": "._artifact",
    "DEFAULT_STREAM_BATCH": "._streaming", "STREAMING_METHODS": "._streaming", "AssignSummary": "._streaming",
    "aligned_batch_size": "._streaming", "assign_streaming": "._streaming", "build_streaming": "._streaming",
    "check_unique_ids": "._streaming", "encode_batch": "._streaming",
    "StreamingMetrics": "._stream_metrics", "StreamingRun": "._streaming",
    "SemanticTokenizer": "._tokenizer", "SIDS_NAME": "._tokenizer", "WEIGHTS_NAME": "._tokenizer", "level_token": "._tokenizer",
    "parse_sid_string": "._tokenizer", "register_index_builder": "._tokenizer", "sid_string": "._tokenizer",
    **dict.fromkeys(("category_nmi", "collision_stats", "level_stats", "prefix_fanout", "reconstruction_stats", "tokenizer_metrics"),
                    "._metrics"),
}
__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "DEFAULT_STREAM_BATCH",
    "STREAMING_METHODS",
    "TOKENIZER",
    "WEIGHTS_NAME",
    "AssignSummary",
    "SIDS_NAME",
    "SemanticTokenizer",
    "StreamingMetrics",
    "StreamingRun",
    "aligned_batch_size",
    "assign_streaming",
    "build",
    "build_streaming",
    "category_nmi",
    "check_unique_ids",
    "collision_stats",
    "encode_batch",
    "level_stats",
    "level_token",
    "parse_sid_string",
    "prefix_fanout",
    "reconstruction_stats",
    "register_index_builder",
    "sid_string",
    "tokenizer_metrics",
]
