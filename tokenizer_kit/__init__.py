"""tokenizer-kit: semantic IDs for generative recommenders (OneRec-style item tokenizer)."""

from ._version import __version__
from .errors import ArtifactError, InputError, TokenizerKitError
from ._tokenizer import SemanticTokenizer, parse_sid_string, sid_string
from .quantizers import RQKMeans, RQKMeansConfig

__all__ = [
    "ArtifactError",
    "InputError",
    "RQKMeans",
    "RQKMeansConfig",
    "SemanticTokenizer",
    "TokenizerKitError",
    "__version__",
    "parse_sid_string",
    "sid_string",
]
