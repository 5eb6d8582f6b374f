"""tokenizer-kit: semantic IDs for generative recommenders (OneRec-style item tokenizer)."""

from ._version import __version__
from .errors import ArtifactError, InputError, TokenizerKitError
from .quantizers import RQKMeans, RQKMeansConfig

__all__ = [
    "ArtifactError",
    "InputError",
    "RQKMeans",
    "RQKMeansConfig",
    "TokenizerKitError",
    "__version__",
]
