"""Swing speed: sparse vectorised `swing_similarity` vs the plain-Python definition.

Baselines (all three give the same similarities, checked on every run): the per-item loop
most code bases ship (for each item, for each pair of its users, add to every co-clicked
item) and `swing_reference` (loops over item pairs, then their common users' pairs). Logs: the training part of
Amazon Office (leave-one-out) and a larger generated log (Zipf item popularity, users drawn
from taste clusters). Writes benchmarks/results/swing_speed.json.

    python benchmarks/swing_speed.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_info as machine  # noqa: E402
from _paths import OFFICE, portable  # noqa: E402

from tokenizer_kit.alignment import PairMiningConfig, interaction_log, leave_one_out_split, swing_reference, swing_similarity  # noqa: E402
from tokenizer_kit.io import read_interactions  # noqa: E402


def generated_log(n_users: int, n_items: int, per_user: int, n_clusters: int = 50, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    item_cluster = rng.integers(0, n_clusters, n_items)
    users, items, ts = [], [], []
    for u in range(n_users):
        c = rng.integers(0, n_clusters)
        w = pop * np.where(item_cluster == c, 20.0, 1.0)
        k = int(rng.integers(max(2, per_user // 2), per_user * 3 // 2 + 1))
        chosen = rng.choice(n_items, size=k, replace=False, p=w / w.sum())
        users += [str(u)] * k
        items += chosen.astype(str).tolist()
        ts += list(range(k))
    return pa.table({"user_id": users, "item_id": items, "timestamp": ts})


def swing_per_item_loops(log, cfg: PairMiningConfig) -> dict[tuple[int, int], float]:
    """The straightforward Swing most code bases ship (the paper's per-item loop): for each
    item i, for each pair of its users, add the pair's weight to every other item both have."""
    import itertools

    from tokenizer_kit.alignment import cap_interactions

    users, items = cap_interactions(log, max_items_per_user=cfg.max_items_per_user, max_users_per_item=cfg.max_users_per_item)
    user_items: dict[int, set[int]] = {}
    item_users: dict[int, list[int]] = {}
    for u, i in zip(users.tolist(), items.tolist()):
        user_items.setdefault(u, set()).add(i)
        item_users.setdefault(i, []).append(u)
    w = {u: len(s) ** (-cfg.user_weight_power) for u, s in user_items.items()}
    sim: dict[tuple[int, int], float] = {}
    for i, us in item_users.items():
        for u, v in itertools.combinations(sorted(us), 2):
            common = user_items[u] & user_items[v]
            if len(common) < 2:
                continue
            s = w[u] * w[v] / (cfg.alpha + len(common))
            for j in common:
                if j > i:
                    sim[(i, j)] = sim.get((i, j), 0.0) + s
    return sim


def bench(name: str, log, cfg: PairMiningConfig, repeats: int = 3) -> dict:
    fast_t = []
    for _ in range(repeats):
        t = time.perf_counter()
        sim = swing_similarity(log, cfg)
        fast_t.append(time.perf_counter() - t)
    t = time.perf_counter()
    loops = swing_per_item_loops(log, cfg)
    loops_t = time.perf_counter() - t
    t = time.perf_counter()
    ref = swing_reference(log, cfg)
    ref_t = time.perf_counter() - t
    assert loops.keys() == ref.keys() and all(abs(loops[k] - v) <= 1e-12 * v for k, v in ref.items())
    dense_err = 0.0
    coo = sim.tocoo()
    fast_pairs = {(int(i), int(j)): float(v) for i, j, v in zip(coo.row, coo.col, coo.data) if i < j}
    assert fast_pairs.keys() == ref.keys(), "fast and reference Swing disagree on the support"
    dense_err = max(abs(fast_pairs[k] - v) / v for k, v in ref.items()) if ref else 0.0
    res = {
        "log": name,
        "interactions": int(len(log)),
        "users": int(len(np.unique(log.users))),
        "items": int(len(np.unique(log.items))),
        "nonzero_item_pairs": len(ref),
        "vectorised_s": min(fast_t),
        "vectorised_s_all": fast_t,
        "per_item_loops_s": loops_t,
        "speedup_vs_per_item_loops": loops_t / min(fast_t),
        "item_pair_reference_s": ref_t,
        "speedup_vs_item_pair_reference": ref_t / min(fast_t),
        "max_relative_difference": dense_err,
    }
    print(json.dumps(res))
    return res


def main() -> None:
    cfg = PairMiningConfig()
    out = {"benchmark": "swing_speed", "machine": machine(), "config": cfg.to_dict(), "command": portable("python " + " ".join(sys.argv)), "runs": []}
    office = leave_one_out_split(interaction_log(read_interactions(OFFICE / "Office.inter.json"))).train
    out["runs"].append(bench("amazon-office (train part)", office, cfg))
    gen = interaction_log(generated_log(20000, 8000, 20))
    out["runs"].append(bench("generated 20k users x 8k items", gen, cfg, repeats=2))
    p = Path(__file__).resolve().parent / "results" / "swing_speed.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
