"""Feature extraction backends (text embeddings now; VLM token features with their issue)."""

from ._text_embed import default_text_model_path, embed_texts, item_texts

__all__ = ["default_text_model_path", "embed_texts", "item_texts"]
