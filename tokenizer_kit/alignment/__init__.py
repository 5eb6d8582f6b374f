"""Alignment stage: pair mining (Swing, user-to-item), QFormer, InfoNCE + caption losses, training, embedding.

The leave-one-out split lives in ``tokenizer_kit.io`` (one rule for alignment and the
companion); it is re-exported here for convenience.
"""

from ..io import InteractionLog, Split, interaction_log, leave_one_out_split
from ._caption import CaptionLM, caption_texts, default_caption_lm, load_caption_lm
from ._embed import POOLINGS, embed_store, load_alignment, pool_queries
from ._losses import Temperature, info_nce, info_nce_reference, item_vectors, pair_similarity
from ._pairs import PairMiningConfig, cap_interactions, mine_pairs, swing_reference, swing_similarity, swing_topk, user_to_item_pairs
from ._qformer import CrossAttention, FeedForward, QFormer, QFormerConfig, RMSNorm
from ._train import (
    ALIGNMENT_FORMAT_VERSION,
    AlignConfig,
    AlignmentModel,
    embed_indices,
    evaluate_alignment,
    pair_recall_at_k,
    pooled_features,
    train_alignment,
)

__all__ = [
    "ALIGNMENT_FORMAT_VERSION",
    "AlignConfig",
    "AlignmentModel",
    "CaptionLM",
    "CrossAttention",
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
    "default_caption_lm",
    "embed_indices",
    "embed_store",
    "evaluate_alignment",
    "info_nce",
    "info_nce_reference",
    "interaction_log",
    "item_vectors",
    "leave_one_out_split",
    "load_alignment",
    "load_caption_lm",
    "mine_pairs",
    "pair_recall_at_k",
    "pair_similarity",
    "pool_queries",
    "pooled_features",
    "swing_reference",
    "swing_similarity",
    "swing_topk",
    "train_alignment",
    "user_to_item_pairs",
]
