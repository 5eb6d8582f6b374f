"""tokenizer-kit: semantic IDs for generative recommenders (OneRec-style item tokenizer)."""

from ._version import __version__
from .errors import ArtifactError, InputError, TokenizerKitError
from ._tokenizer import SemanticTokenizer, parse_sid_string, sid_string
from .features import ExtractConfig, FeatureStore, extract_features
from .indexer import IndexConfig, SIDIndex, SIDTrie, SIDVocab
from .quantizers import RQKMeans, RQKMeansConfig

__all__ = [
    "ArtifactError",
    "ExtractConfig",
    "FeatureStore",
    "IndexConfig",
    "InputError",
    "RQKMeans",
    "RQKMeansConfig",
    "RQVAE",
    "RQVAEConfig",
    "SIDIndex",
    "SIDTrie",
    "SIDVocab",
    "SemanticTokenizer",
    "TrieLogitsProcessor",
    "TokenizerKitError",
    "__version__",
    "extract_features",
    "parse_sid_string",
    "sid_string",
]


def __getattr__(name):
    # RQ-VAE imports torch (seconds); load it on first use
    if name in ("RQVAE", "RQVAEConfig"):
        from . import quantizers

        return getattr(quantizers, name)
    if name == "TrieLogitsProcessor":
        from . import indexer

        return indexer.TrieLogitsProcessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
