"""Companion: the consumer side of SIDs, a small generative retriever that measures them downstream.

User history (SIDs of the last ``max_history`` items) -> the next item's SID, with a
randomly initialised T5 (encoder-decoder, as TIGER), a decoder-only model, or a pretrained
Hugging Face causal LM with the SID tokens added (``arch="causal-lm"``), decoded by
trie-constrained beam search (the indexer's ``TrieLogitsProcessor``), scored with
leave-one-out full ranking: Recall@5/10 and NDCG@5/10 as TIGER defines them.

>>> from tokenizer_kit.companion import evaluate_retrieval, RetrievalConfig
>>> res = evaluate_retrieval("tok/", "Office.inter.json", RetrievalConfig(epochs=10))
>>> res["test"]["recall@10"], res["test"]["ndcg@10"]
"""

from ._data import SequenceSplit, load_sid_index, random_sid_index, sequence_split
from ._evaluate import evaluate_retrieval, machine_info, score_split, users_fingerprint
from ._metrics import UserRanks, retrieval_metrics, target_ranks, user_ranks
from ._compare import compare_retrieval, summarize_runs
from ._model import GenerativeRetriever, RetrievalConfig, list_retrieval_presets
from ._causal_lm import CausalLMRetriever, make_retriever

__all__ = [
    "CausalLMRetriever",
    "GenerativeRetriever",
    "RetrievalConfig",
    "SequenceSplit",
    "UserRanks",
    "compare_retrieval",
    "evaluate_retrieval",
    "list_retrieval_presets",
    "load_sid_index",
    "machine_info",
    "make_retriever",
    "random_sid_index",
    "retrieval_metrics",
    "score_split",
    "summarize_runs",
    "sequence_split",
    "target_ranks",
    "user_ranks",
    "users_fingerprint",
]
