"""Alignment stage: pair mining (Swing, user-to-item), QFormer, InfoNCE + caption losses, training, embedding.

The leave-one-out split lives in ``tokenizer_kit.io`` (one rule for alignment and the
companion); it is re-exported here for convenience.
"""

from .._exports import lazy_exports
from ..io import InteractionLog, Split, interaction_log, leave_one_out_split
from ._artifact import ALIGNMENT, CHECKPOINT, is_alignment_complete, read_alignment_eval
from ._config import POOLINGS, AlignConfig, AlignRunConfig, EmbedSettings, QFormerConfig
from ._pairs import PairMiningConfig, cap_interactions, mine_pairs, swing_reference, swing_similarity, swing_topk, user_to_item_pairs

# the parts that import torch load on first use, so the settings and pair mining do not
_LAZY = {
    **dict.fromkeys(("CaptionLM", "caption_texts", "default_caption_lm", "load_caption_lm", "open_causal_lm"), "._caption"),
    **dict.fromkeys(("check_embed_settings", "embed_rows", "embed_store", "embedding_record", "load_alignment", "pool_queries"), "._embed"),
    **dict.fromkeys(("Temperature", "info_nce", "info_nce_reference", "item_vectors", "pair_similarity"), "._losses"),
    **dict.fromkeys(("CrossAttention", "FeedForward", "QFormer", "RMSNorm"), "._qformer"),
    **dict.fromkeys(("ALIGNMENT_FORMAT_VERSION", "AlignData", "AlignmentModel", "embed_indices", "evaluate_alignment", "pair_recall_at_k",
                     "pooled_features", "train_alignment"), "._train"),
}

__all__ = [
    "ALIGNMENT",
    "ALIGNMENT_FORMAT_VERSION",
    "AlignConfig",
    "AlignData",
    "AlignRunConfig",
    "AlignmentModel",
    "CHECKPOINT",
    "CaptionLM",
    "CrossAttention",
    "EmbedSettings",
    "FeedForward",
    "InteractionLog",
    "POOLINGS",
    "PairMiningConfig",
    "QFormer",
    "QFormerConfig",
    "RMSNorm",
    "Split",
    "Temperature",
    "cap_interactions",
    "caption_texts",
    "check_embed_settings",
    "default_caption_lm",
    "embed_indices",
    "embed_rows",
    "embed_store",
    "embedding_record",
    "evaluate_alignment",
    "info_nce",
    "info_nce_reference",
    "interaction_log",
    "is_alignment_complete",
    "item_vectors",
    "leave_one_out_split",
    "load_alignment",
    "load_caption_lm",
    "mine_pairs",
    "open_causal_lm",
    "pair_recall_at_k",
    "pair_similarity",
    "pool_queries",
    "pooled_features",
    "read_alignment_eval",
    "swing_reference",
    "swing_similarity",
    "swing_topk",
    "train_alignment",
    "user_to_item_pairs",
]


__getattr__ = lazy_exports(__name__, _LAZY)
