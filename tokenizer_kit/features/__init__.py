"""Feature extraction: VLM/text token features into a sharded store; text embeddings."""

from ._extract import ExtractConfig, ExtractResult, extract_features
from ._store import FEATURE_STORE, STORE_FORMAT_VERSION, FeatureStore, FeatureStoreWriter, write_feature_store
from ._text_embed import default_text_model_path, embed_texts, item_texts

__all__ = [
    "FEATURE_STORE",
    "STORE_FORMAT_VERSION",
    "ExtractConfig",
    "ExtractResult",
    "FeatureStore",
    "FeatureStoreWriter",
    "default_text_model_path",
    "embed_texts",
    "extract_features",
    "item_texts",
    "write_feature_store",
]
