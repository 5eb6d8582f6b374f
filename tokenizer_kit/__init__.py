"""tokenizer-kit: semantic IDs for generative recommenders (OneRec-style item tokenizer)."""

import importlib

from ._exports import lazy_exports
from ._version import __version__
from .errors import ArtifactError, InputError, TokenizerKitError, UsageError

# the public names load on first use (PEP 562): `import tokenizer_kit` (and every CLI start)
# costs no numpy, pyarrow or torch until something asks for them
_LAZY = {
    "list_presets": "._config",
    "SemanticTokenizer": ".build", "parse_sid_string": ".build", "sid_string": ".build",
    "ExtractConfig": ".features", "FeatureStore": ".features", "extract_features": ".features",
    "IndexConfig": ".indexer", "SIDIndex": ".indexer", "SIDTrie": ".indexer", "SIDVocab": ".indexer",
    "add_sid_tokens": ".indexer", "load_sids": ".indexer", "TrieLogitsProcessor": ".indexer",
    "RQKMeans": ".quantizers", "RQKMeansConfig": ".quantizers", "RQVAEConfig": ".quantizers",
    "RQVAE": ".quantizers",  # imports torch (seconds)
}

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


_ALIGNMENT = (
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
__all__ += list(_ALIGNMENT)
_LAZY.update(dict.fromkeys(_ALIGNMENT, ".alignment"))
_lazy_getattr = lazy_exports(__name__, _LAZY)


def __getattr__(name):
    if name == "SemanticTokenizer":  # its build(index=True) calls the builder the indexer registers
        importlib.import_module(".indexer", __name__)
    return _lazy_getattr(name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
