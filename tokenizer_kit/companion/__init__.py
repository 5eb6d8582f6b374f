"""Companion: the consumer side of SIDs, a small generative retriever that measures them downstream.

User history (SIDs of the last ``max_history`` items) -> the next item's SID, with a
randomly initialised T5 (encoder-decoder, as TIGER) or a decoder-only model, decoded by
trie-constrained beam search (the indexer's ``TrieLogitsProcessor``), scored with
leave-one-out full ranking: Recall@5/10 and NDCG@5/10 as TIGER defines them.

>>> from tokenizer_kit.companion import evaluate_retrieval, RetrievalConfig
>>> res = evaluate_retrieval("tok/", "Office.inter.json", RetrievalConfig(epochs=10))
>>> res["test"]["recall@10"], res["test"]["ndcg@10"]
"""

from ._data import SequenceSplit, load_sid_index, random_sid_index, sequence_split
from ._evaluate import evaluate_retrieval, machine_info, score_split
from ._metrics import retrieval_metrics, target_ranks
from ._model import GenerativeRetriever, RetrievalConfig

__all__ = [
    "GenerativeRetriever",
    "RetrievalConfig",
    "SequenceSplit",
    "evaluate_retrieval",
    "load_sid_index",
    "machine_info",
    "random_sid_index",
    "retrieval_metrics",
    "score_split",
    "sequence_split",
    "target_ranks",
]
