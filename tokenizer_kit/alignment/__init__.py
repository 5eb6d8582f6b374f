"""Alignment stage: pair mining (Swing, user-to-item), QFormer, InfoNCE + caption losses, training, embedding."""

from ._pairs import PairMiningConfig, cap_interactions, mine_pairs, swing_reference, swing_similarity, swing_topk, user_to_item_pairs
from ._split import InteractionLog, Split, interaction_log, leave_one_out_split

__all__ = [
    "InteractionLog",
    "PairMiningConfig",
    "Split",
    "cap_interactions",
    "interaction_log",
    "leave_one_out_split",
    "mine_pairs",
    "swing_reference",
    "swing_similarity",
    "swing_topk",
    "user_to_item_pairs",
]
