"""``evaluate_retrieval``: train the companion model on a tokenizer's SIDs and score it (one call)."""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import time
from typing import Any, Callable

import numpy as np
import torch

from .._progress import Progress
from ._data import SequenceSplit, load_sid_index, sequence_split
from ._metrics import UserRanks
from ._causal_lm import make_retriever
from ._model import GenerativeRetriever, RetrievalConfig

__all__ = ["evaluate_retrieval", "score_split", "machine_info", "users_fingerprint"]

logger = logging.getLogger(__name__)


def evaluate_retrieval(
    sids,
    interactions,
    config: RetrievalConfig | dict | None = None,
    *,
    max_users: int | None = None,
    model_out: str | os.PathLike | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Downstream check of SIDs: leave-one-out next-item retrieval, full ranking, Recall/NDCG@K.

    ``sids``: a tokenizer directory, an LC-Rec ``*.index.json`` or a ``SIDIndex``.
    ``interactions``: a path (Parquet, LC-Rec ``*.inter.json``) or a ``pyarrow.Table``.
    ``max_users``: keep only the first that many users (sorted by id), for quick runs.
    ``on_epoch(record)`` is called after every training epoch; ``progress`` gets a task for
    training (steps, with the loss) and one per decoded split (users).
    Returns a JSON-ready dict: test and validation metrics, training losses, timings.

    Steps: load the SIDs, :func:`~tokenizer_kit.companion.sequence_split` (the one
    leave-one-out split), train (:meth:`GenerativeRetriever.fit`), :func:`_validate`,
    :func:`score_split` on the test users, save the model if asked, :func:`_result`.
    """
    cfg = RetrievalConfig.from_dict(config) if isinstance(config, dict) else (config or RetrievalConfig()).validate()
    t_all = time.perf_counter()
    index = load_sid_index(sids)
    split = sequence_split(interactions, index, max_history=cfg.max_history, max_users=max_users)
    logger.info("split: %s", split.stats)
    retr = make_retriever(index, cfg, sids=sids if isinstance(sids, (str, os.PathLike)) else None)
    t0 = time.perf_counter()
    history = retr.fit(split.train_hist, split.train_target, valid=split.subset("valid", cfg.max_eval_users), on_epoch=on_epoch, progress=progress)
    seconds = {"train": time.perf_counter() - t0}
    valid, seconds["valid"] = _validate(retr, split, progress)
    test, seconds["test"], ranks = score_split(retr, split, "test", progress=progress)
    if model_out is not None:
        retr.save(model_out)
    seconds["total"] = time.perf_counter() - t_all
    source = sids if isinstance(sids, (str, os.PathLike)) else getattr(index, "stats", {}).get("source", "in-memory index")
    res = _result(retr, split, history, valid=valid, test=test, seconds=seconds, source=source, model_out=model_out)
    res["test_users"] = {"fingerprint": users_fingerprint(split, "test", cfg.max_eval_users), **test_examples(split, index, cfg.max_eval_users),
                         **ranks.to_json()}
    return res


def score_split(
    retr: GenerativeRetriever, split: SequenceSplit, part: str, *, progress: Progress | None = None
) -> tuple[dict[str, Any], float, UserRanks]:
    """Beam-search the ``part`` ("valid" or "test") users of ``split`` (at most
    ``max_eval_users``) and score where their targets' SIDs landed: (metrics, seconds, per-user ranks).

    Metrics: the standard ``recall@K`` / ``ndcg@K`` (SID level, as TIGER and LC-Rec compute
    them) and the collision-corrected ``item_hit@K`` / ``item_ndcg@K`` (CollisionGenRec), see
    :mod:`tokenizer_kit.companion._metrics`; ``shared_target_rate``; ``invalid_sid_rate`` (beam
    slots without an SID of the index); ``mean_rank_of_hits`` (0-based beam rank).
    """
    cfg = retr.config
    hist, tgt = split.subset(part, cfg.max_eval_users)
    t = time.perf_counter()
    toks, _ = retr.generate_sids(hist, progress=progress, description=f"decode {part}")
    ranks = retr.user_ranks(toks, tgt)
    m: dict[str, Any] = ranks.metrics(cfg.ks)
    m["users"] = int(len(tgt))
    m["invalid_sid_rate"] = float((retr.sid_groups(toks) < 0).mean()) if toks.size else 0.0
    r = ranks.rank
    m["mean_rank_of_hits"] = float(r[r >= 0].mean()) if (r >= 0).any() else None
    return m, time.perf_counter() - t, ranks


def users_fingerprint(split: SequenceSplit, part: str = "test", max_examples: int | None = None) -> str:
    """sha256 (16 hex) of the ``part`` examples' users and target rows, in order: two results
    can be paired user by user only when their fingerprints agree."""
    users = getattr(split, f"{part}_users")
    _, tgt = split.subset(part, max_examples)
    h = hashlib.sha256()
    for u, t in zip(users[: len(tgt)].tolist(), np.asarray(tgt).tolist()):
        h.update(f"{u}\t{t}\n".encode())
    return h.hexdigest()[:16]


def test_examples(split: SequenceSplit, index, max_examples: int | None = None) -> dict[str, list[str]]:
    """The scored test examples as ``users`` and ``targets`` (item ids), in order: what lets a
    comparison pair runs on the examples every set scored when their fingerprints differ (an
    index that lacks some items drops their interactions, and so some users)."""
    _, tgt = split.subset("test", max_examples)
    users = split.test_users[: len(tgt)]
    items = np.asarray(index.item_ids, dtype=object)[np.asarray(tgt, np.int64)] if len(tgt) else []
    return {"users": [str(u) for u in users.tolist()], "targets": [str(i) for i in list(items)]}


_LOSS_USERS = 2048  # the validation loss alone is a trend, not a score: a sample of users is enough


def _validate(retr: GenerativeRetriever, split: SequenceSplit, progress: Progress | None) -> tuple[dict[str, Any], float]:
    """Validation numbers: with ``eval_every``, those of the epoch whose weights were kept
    (scored during training, not decoded again); else only the loss on the first 2,048
    validation users (cheap)."""
    cfg = retr.config
    t = time.perf_counter()
    kept = [r for r in retr.history if r.get("best")]
    if cfg.eval_every and kept:
        vt = split.subset("valid", cfg.max_eval_users)[1]
        return {**kept[-1]["valid"], "users": int(len(vt)), "epoch": kept[-1]["epoch"]}, 0.0
    vh, vt = split.subset("valid", min(cfg.max_eval_users or _LOSS_USERS, _LOSS_USERS))
    return {"loss": retr.loss(vh, vt), "loss_users": int(len(vt))}, time.perf_counter() - t


def _result(retr: GenerativeRetriever, split: SequenceSplit, history, *, valid, test, seconds, source, model_out) -> dict[str, Any]:
    """The JSON-ready result of :func:`evaluate_retrieval`."""
    index, cfg = retr.index, retr.config
    return {
        "sids": str(source),
        "sid_length": int(index.sid_length),
        "level_sizes": [int(k) for k in index.level_sizes],
        "n_items": int(len(index)),
        "duplicate_sids": int(len(index) - index.trie.n_leaves),
        "data": dict(split.stats),
        "config": cfg.to_dict(),
        "parameters": retr.n_parameters,
        "trainable_parameters": int(sum(p.numel() for p in retr.model.parameters() if p.requires_grad)),
        "device": str(retr.device),
        "test": test,
        "valid": valid,
        "train": {
            "epochs": cfg.epochs,
            "losses": [round(h["loss"], 6) for h in history],
            "epoch_records": history,
            "seconds": seconds["train"],
        },
        "seconds": seconds,
        "machine": machine_info(),
        "model_out": None if model_out is None else str(model_out),
    }


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
