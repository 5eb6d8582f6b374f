"""``compare_retrieval``: several sets of SIDs, several seeds each, the same companion and split,
summarised with intervals and paired tests (:mod:`tokenizer_kit.companion._stats`).

Each (set, seed) is one :func:`~tokenizer_kit.companion.evaluate_retrieval` run. With
``runs_dir`` every run is written as ``<runs_dir>/<set>/seed<k>.json`` as soon as it ends, and
a later call with the same config, interactions and SIDs reads it back instead of training
again: a killed comparison resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._progress import Progress
from ..errors import InputError
from ._evaluate import evaluate_retrieval
from ._metrics import UserRanks
from ._model import RetrievalConfig
from ._stats import bootstrap_sets, holm

__all__ = ["compare_retrieval", "summarize_runs", "DEFAULT_METRICS"]

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("item_hit@10", "item_ndcg@10", "recall@10", "ndcg@10", "item_hit@5", "item_ndcg@5", "recall@5", "ndcg@5")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _sids_fingerprint(index) -> str:
    """sha256 (16 hex) of an index's item ids and SIDs: a stored run is reused only for the same SIDs."""
    h = hashlib.sha256()
    h.update("\n".join(map(str, index.item_ids.tolist())).encode())
    h.update(np.ascontiguousarray(index.sids, np.int64).tobytes())
    return h.hexdigest()[:16]


def _run_key(cfg: RetrievalConfig, sids_fp: str, interactions, max_users) -> dict[str, Any]:
    inter = Path(interactions).name if isinstance(interactions, (str, os.PathLike)) else "in-memory"
    return {"config": cfg.to_dict(), "sids": sids_fp, "interactions": inter, "max_users": max_users}


def _same_key(stored: dict[str, Any], key: dict[str, Any]) -> bool:
    """Same SIDs, interactions file and users, and the same value of every setting both configs
    name (a setting added since keeps the stored run valid only where its default is used)."""
    key = json.loads(json.dumps(key))
    if not isinstance(stored, dict) or any(stored.get(k) != key[k] for k in ("sids", "interactions", "max_users")):
        return False
    a, b = stored.get("config") or {}, key["config"]
    shared = set(a) & set(b)
    defaults = RetrievalConfig().to_dict()
    return all(a[k] == b[k] for k in shared) and all(b[k] == defaults.get(k) for k in set(b) - set(a))


def compare_retrieval(
    sids: Mapping[str, Any],
    interactions,
    config: RetrievalConfig | dict | None = None,
    *,
    seeds: Sequence[int] = (0,),
    max_users: int | None = None,
    runs_dir: str | os.PathLike | None = None,
    reference: str | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n_boot: int = 4000,
    alpha: float = 0.05,
    on_run: Callable[[str, int, dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train and score one companion per (set of SIDs, seed); summarise with intervals and paired tests.

    ``sids``: name -> a tokenizer directory, an LC-Rec ``*.index.json`` or a ``SIDIndex``.
    ``config``: the companion (its ``seed`` is replaced by each of ``seeds``). ``reference``:
    the set the others are compared with (default: the first). ``on_run(name, seed, result)``
    is called after each run (trained or read back). Returns ``{"sets": ..., "comparisons": ...,
    "runs": ...}`` (see :func:`summarize_runs`); ``runs`` keeps every run's full result.
    """
    from ._data import load_sid_index

    cfg = RetrievalConfig.from_dict(config) if isinstance(config, dict) else (config or RetrievalConfig()).validate()
    seeds = [int(s) for s in seeds]
    if not sids:
        raise InputError("give at least one set of SIDs to evaluate")
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct integers, got {seeds}")
    bad = [n for n in sids if not _NAME.match(str(n))]
    if bad:
        raise InputError(f"set names {bad} must be letters, digits and _.+- (they name files under the runs directory)")
    if reference is not None and reference not in sids:
        raise InputError(f"reference {reference!r} is not one of the sets {list(sids)}")
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, src in sids.items():
        index = load_sid_index(src)
        fp = _sids_fingerprint(index)
        runs[name] = []
        for seed in seeds:
            run_cfg = dataclasses.replace(cfg, seed=seed)
            key = _run_key(run_cfg, fp, interactions, max_users)
            path = None if runs_dir is None else Path(runs_dir) / name / f"seed{seed}.json"
            res = _stored(path, key)
            if res is None:
                logger.info("training %s, seed %d", name, seed)
                res = evaluate_retrieval(index, interactions, run_cfg, max_users=max_users, progress=progress)
                res["sids"] = str(src) if isinstance(src, (str, os.PathLike)) else res["sids"]
                res["run_key"] = key
                if path is not None:
                    from ..io import atomic_write_json

                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_json(path, res)
            else:
                logger.info("%s, seed %d: read back from %s", name, seed, path)
            runs[name].append(res)
            if on_run is not None:
                on_run(name, seed, res)
    out = summarize_runs(runs, metrics=metrics, reference=reference, n_boot=n_boot, alpha=alpha)
    out["config"] = cfg.to_dict()
    out["seeds"] = seeds
    out["runs"] = runs
    return out


def _stored(path: Path | None, key: dict[str, Any]) -> dict[str, Any] | None:
    """A stored run at ``path`` made with the same ``key``, else None (a different key is redone)."""
    if path is None or not path.is_file():
        return None
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        logger.warning("%s is unreadable; running it again", path)
        return None
    if not _same_key(res.get("run_key"), key):
        logger.warning("%s was made with other settings or SIDs; running it again", path)
        return None
    return res


def summarize_runs(
    runs: Mapping[str, Sequence[dict[str, Any]]],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    reference: str | None = None,
    n_boot: int = 4000,
    alpha: float = 0.05,
    boot_seed: int = 0,
) -> dict[str, Any]:
    """Means, 95% intervals and paired tests of :func:`evaluate_retrieval` results.

    ``runs[name]``: that set's results, one per seed. Runs on the same test users (the same
    ``test_users.fingerprint``) are paired user by user; otherwise on the test examples (user,
    target item) every run scored, and ``users_left_out`` says how many each set lost. For each metric: per set the mean over seeds, each
    seed's value and the two-stage bootstrap interval; per set other than ``reference`` the
    difference to it, its interval, the bootstrap p and Holm's adjusted p over the sets,
    and ``significant`` (adjusted p < ``alpha``).
    """
    names = list(runs)
    if not names or any(not runs[n] for n in names):
        raise InputError("every set needs at least one run to summarise")
    reference = names[0] if reference is None else reference
    if reference not in runs:
        raise InputError(f"reference {reference!r} is not one of the sets {names}")
    ranks = {n: [UserRanks.from_json(r["test_users"]) for r in runs[n]] for n in names}
    left_out = {n: 0 for n in names}
    if len({r["test_users"]["fingerprint"] for n in names for r in runs[n]}) != 1:
        ranks, left_out = _pair_on_shared_examples(runs, ranks, reference)
    sets: dict[str, dict[str, Any]] = {n: {"seeds": [int(r["config"]["seed"]) for r in runs[n]], **_set_info(runs[n][0])} for n in names}
    comparisons: dict[str, dict[str, Any]] = {}
    for mi, metric in enumerate(metrics):
        values = {n: np.stack([u.per_user(metric) for u in ranks[n]]) for n in names}
        boot = bootstrap_sets(values, n_boot=n_boot, seed=boot_seed + mi)
        for n in names:
            lo, hi = boot.interval(n)
            sets[n][metric] = {"mean": float(values[n].mean()), "per_seed": values[n].mean(1).tolist(), "lo": lo, "hi": hi}
        others = [n for n in names if n != reference]
        diffs = {n: boot.difference(n, reference) for n in others}
        adj = holm([diffs[n]["p"] for n in others]) if others else []
        for n, a in zip(others, adj):
            diffs[n]["p_holm"] = a
            diffs[n]["significant"] = bool(a < alpha)
        comparisons[metric] = diffs
    for n in names:
        sets[n]["shared_target_rate"] = float(np.mean([r["test"]["shared_target_rate"] for r in runs[n]]))
        sets[n]["train_seconds"] = [float(r["seconds"]["train"]) for r in runs[n]]
    return {
        "reference": reference,
        "metrics": list(metrics),
        "users": int(len(next(iter(ranks.values()))[0])),
        "users_left_out": left_out,
        "bootstrap": {"replicates": n_boot, "alpha": alpha, "method": "two-stage (users shared by all sets, seeds per set), Holm over the sets"},
        "sets": sets,
        "comparisons": comparisons,
    }


def _pair_on_shared_examples(runs: Mapping[str, Sequence[dict[str, Any]]], ranks: dict[str, list[UserRanks]],
                             reference: str) -> tuple[dict[str, list[UserRanks]], dict[str, int]]:
    """Each run's per-user ranks cut to the test examples (user, target item) that every run
    scored, in the reference's order, and how many each set left out. Sets whose indexes cover
    different items score different users (an item an index lacks drops its interactions)."""
    keys: dict[str, list[list[tuple[str, str]]]] = {}
    for n, rs in runs.items():
        for r in rs:
            tu = r["test_users"]
            if "users" not in tu or "targets" not in tu or not len(tu["users"]) == len(tu["targets"]) == int(tu["n"]):
                raise InputError("the runs did not score the same test users (different interactions, max_users or items), and "
                                 "some were made before runs named their users; run them again to pair them on the users they share")
            keys.setdefault(n, []).append(list(zip(tu["users"], tu["targets"])))
    shared = set.intersection(*(set(k) for ks in keys.values() for k in ks))
    if not shared:
        raise InputError("the runs share no test user (user and target item); they cannot be paired: check that every set of "
                         "SIDs covers the catalogue of the interactions")
    order = [k for k in keys[reference][0] if k in shared]
    out: dict[str, list[UserRanks]] = {}
    left_out: dict[str, int] = {}
    for n, ks in keys.items():
        out[n] = []
        for run_keys, rk in zip(ks, ranks[n]):
            pos = {k: i for i, k in enumerate(run_keys)}
            sel = np.fromiter((pos[k] for k in order), np.int64, len(order))
            out[n].append(UserRanks(rk.rank[sel], rk.before[sel], rk.group[sel]))
        left_out[n] = max(len(k) for k in ks) - len(order)
    logger.warning("the sets scored different test users; paired on the %d every set scored (left out: %s)", len(order),
                   ", ".join(f"{n} {k}" for n, k in left_out.items()))
    return out, left_out


def _set_info(res: dict[str, Any]) -> dict[str, Any]:
    return {"sids": res.get("sids"), "sid_length": res.get("sid_length"), "level_sizes": res.get("level_sizes"),
            "duplicate_sids": res.get("duplicate_sids"), "n_items": res.get("n_items")}
