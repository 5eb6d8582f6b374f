"""Feature extraction: VLM/text token features into a sharded store; text embeddings."""

from ._extract import ExtractConfig, ExtractResult, extract_features, prepare_store
from ._sharded import ShardCommitter, ShardEncoder, incoming_dir, store_shard_name
from ._store import FEATURE_STORE, STORE_FORMAT_VERSION, FeatureStore, FeatureStoreWriter, write_feature_store
from ._text_embed import TextEncoder, default_text_model_path, embed_texts, item_texts

__all__ = [
    "FEATURE_STORE",
    "STORE_FORMAT_VERSION",
    "ExtractConfig",
    "ExtractResult",
    "FeatureStore",
    "FeatureStoreWriter",
    "ShardCommitter",
    "ShardEncoder",
    "TextEncoder",
    "default_text_model_path",
    "embed_texts",
    "extract_features",
    "incoming_dir",
    "item_texts",
    "prepare_store",
    "store_shard_name",
    "write_feature_store",
]
