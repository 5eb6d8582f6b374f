"""``none``: SIDs are the codes; collisions are only reported."""

from __future__ import annotations

import numpy as np

from ._base import CollisionPolicy, IndexView, Placement, Resolution, register_policy

__all__ = ["NonePolicy"]


@register_policy
class NonePolicy(CollisionPolicy):
    name = "none"
    resolves = False
    by_group = True

    def group_positions(self, keys, rank):
        return None

    def build(self, codes, *, sizes, x, decode, err, retired, suffix_reserve) -> Resolution:
        n = len(codes)
        return Resolution(sids=codes.copy(), moved=np.zeros(n, bool), extra=np.zeros(n))

    def place_new(self, codes, *, view: IndexView, retired, sizes, x, decode) -> Placement:
        m = len(codes)
        collided = np.zeros(m, bool)
        seen: set[tuple] = set()
        for i in range(m):
            t = tuple(codes[i].tolist())
            collided[i] = t in seen or view.contains(t)
            seen.add(t)
        return Placement(sids=codes.copy(), collided=collided, moved=np.zeros(m, bool))
