"""Collision policies: one class per policy (``build``, ``place_new``, SID length), chosen by name.

* ``suffix``   -- append a level numbering each colliding group (TIGER); length L + 1
* ``reassign`` -- move colliding items to the nearest free code; length L
* ``none``     -- SIDs are the codes; collisions are only reported

A new policy is one ``CollisionPolicy`` subclass decorated with ``@register_policy``.
"""

# isort: off  (registration order is the order POLICIES lists them in)
from ._base import POLICIES, CollisionPolicy, IndexView, Placement, Resolution, get_policy, group_policies, register_policy
from ._keys import OccupiedSet, SortedOccupied, key_codes, sid_keys
from ._groups import GroupSpill, first_level_buckets, hash_buckets
from ._suffix import SuffixPolicy, suffix_sids
from ._reassign import ReassignPolicy, place_overflow, reassign_prefixes, reassign_sids
from ._none import NonePolicy

# isort: on

__all__ = [
    "POLICIES",
    "CollisionPolicy",
    "GroupSpill",
    "IndexView",
    "NonePolicy",
    "OccupiedSet",
    "Placement",
    "ReassignPolicy",
    "Resolution",
    "SortedOccupied",
    "SuffixPolicy",
    "first_level_buckets",
    "get_policy",
    "group_policies",
    "hash_buckets",
    "key_codes",
    "place_overflow",
    "reassign_prefixes",
    "reassign_sids",
    "register_policy",
    "sid_keys",
    "suffix_sids",
]
