"""tokenizer-kit: semantic IDs for generative recommenders (OneRec-style item tokenizer)."""

from ._version import __version__
from ._config import list_presets
from .errors import ArtifactError, InputError, TokenizerKitError, UsageError
from ._tokenizer import SemanticTokenizer, parse_sid_string, sid_string
from .features import ExtractConfig, FeatureStore, extract_features
from .indexer import IndexConfig, SIDIndex, SIDTrie, SIDVocab, add_sid_tokens, load_sids
from .quantizers import RQKMeans, RQKMeansConfig, RQVAEConfig

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
    "UsageError",
    "__version__",
    "add_sid_tokens",
    "extract_features",
    "list_presets",
    "load_sids",
    "parse_sid_string",
    "sid_string",
]


_LAZY_ALIGNMENT = (
    "AlignConfig",
    "PairMiningConfig",
    "QFormer",
    "QFormerConfig",
    "embed_store",
    "leave_one_out_split",
    "load_alignment",
    "mine_pairs",
    "train_alignment",
)
__all__ += list(_LAZY_ALIGNMENT)


def __getattr__(name):
    if name in _LAZY_ALIGNMENT:
        from . import alignment

        return getattr(alignment, name)
    # RQ-VAE imports torch (seconds); load it on first use
    if name == "RQVAE":
        from . import quantizers

        return quantizers.RQVAE
    if name == "TrieLogitsProcessor":
        from . import indexer

        return indexer.TrieLogitsProcessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
