"""Build: the tokenizer artifact (``SemanticTokenizer``), its in-memory and streaming builds,
the streaming assign, and the metrics both report. ``build(source, config)`` picks the route.

Names load on first use (PEP 562): importing the package (the indexer does, for the SID
helpers) costs no numpy, pyarrow or FAISS until a name that needs them is asked for.
"""

from .._exports import lazy_exports

_LAZY = {
    "build": "._build",
    "DEFAULT_STREAM_BATCH": "._streaming", "STREAMING_METHODS": "._streaming",
    "assign_streaming": "._streaming", "build_streaming": "._streaming", "encode_batch": "._streaming",
    "StreamingMetrics": "._stream_metrics", "StreamingRun": "._streaming",
    "SemanticTokenizer": "._tokenizer", "level_token": "._tokenizer", "parse_sid_string": "._tokenizer", "sid_string": "._tokenizer",
    "tokenizer_metrics": "._metrics",
}
__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "DEFAULT_STREAM_BATCH",
    "STREAMING_METHODS",
    "SemanticTokenizer",
    "StreamingMetrics",
    "StreamingRun",
    "assign_streaming",
    "build",
    "build_streaming",
    "encode_batch",
    "level_token",
    "parse_sid_string",
    "sid_string",
    "tokenizer_metrics",
]
