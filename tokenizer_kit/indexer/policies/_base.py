"""The collision-policy protocol and its registry.

A policy turns quantizer codes (n, L) into SIDs with one item per SID. It owns three things:
``build`` (resolve a whole catalogue), ``place_new`` (cold start: place new items against
the SIDs already issued, never moving one) and the SID length it produces. Adding a policy
is adding one subclass decorated with ``@register_policy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol, Sequence

import numpy as np

from ...errors import InputError

__all__ = [
    "POLICIES",
    "CollisionPolicy",
    "Decode",
    "IndexView",
    "Placement",
    "Resolution",
    "get_policy",
    "group_policies",
    "register_policy",
]

Decode = Callable[[np.ndarray], np.ndarray]  # codes (m, L) -> reconstructions (m, d)

POLICIES: dict[str, type["CollisionPolicy"]] = {}


def register_policy(cls: type["CollisionPolicy"]) -> type["CollisionPolicy"]:
    """Class decorator: make ``cls`` selectable by its ``name`` (``IndexConfig.policy``)."""
    if not getattr(cls, "name", ""):
        raise TypeError(f"{cls.__name__} needs a class attribute `name`")
    POLICIES[cls.name] = cls
    return cls


def group_policies() -> list[str]:
    """Names of the policies that resolve each group of equal codes alone (``by_group``)."""
    return [name for name, cls in POLICIES.items() if cls.by_group]


def get_policy(name: str) -> "CollisionPolicy":
    cls = POLICIES.get(name)
    if cls is None:
        raise InputError(f"unknown collision policy {name!r}; choose one of {list(POLICIES)}")
    return cls()


class IndexView(Protocol):
    """What cold start may read of the index it places items into (the SIDs live before the round)."""

    def allowed_next(self, prefix: Sequence[int]) -> np.ndarray: ...  # codes after a prefix, sorted

    def contains(self, sid: Sequence[int]) -> bool: ...  # is this full SID live

    def sids_under(self, prefix: Sequence[int]) -> np.ndarray: ...  # live SIDs (k, S) under a prefix


@dataclass
class Resolution:
    """``build``'s answer for n items: SIDs (n, S), moved (n,) bool, extra squared error (n,)."""

    sids: np.ndarray
    moved: np.ndarray
    extra: np.ndarray
    suffix_size: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Placement:
    """``place_new``'s answer for m new items: SIDs (m, S), collided (m,) bool, moved (m,) bool."""

    sids: np.ndarray
    collided: np.ndarray
    moved: np.ndarray


class CollisionPolicy:
    """Base class: subclasses set ``name`` and implement ``build`` and ``place_new``."""

    name: ClassVar[str] = ""
    extra_levels: ClassVar[int] = 0  # SID levels beyond the quantizer's
    needs_vectors: ClassVar[bool] = False  # build needs the items' vectors and a decoder
    resolves: ClassVar[bool] = True  # one item per SID (False: collisions are only reported)
    keeps_codes: ClassVar[bool] = True  # every SID starts with its item's quantizer codes (never moved)
    # each group of items sharing codes is resolved from its own rows alone, so a catalogue
    # split into shards is resolved group by group (``engines.index_shards``)
    by_group: ClassVar[bool] = False

    def sid_length(self, levels: int) -> int:
        return levels + self.extra_levels

    def level_sizes(self, codebook_sizes: Sequence[int], suffix_size: int) -> list[int]:
        """Tokens per SID level."""
        return [int(k) for k in codebook_sizes]

    def key_sizes(self, codebook_sizes: Sequence[int], sids: np.ndarray, retired: np.ndarray, suffix_size: int) -> list[int]:
        """Radix per SID level large enough for every live and retired SID (for ``sid_keys``)."""
        return [int(k) for k in codebook_sizes]

    def grown_suffix_size(self, suffix_size: int, placed: np.ndarray) -> int:
        """The extra level's vocabulary size after cold start placed SIDs ``placed`` (m, S)."""
        return suffix_size

    def group_positions(self, keys: np.ndarray, rank: np.ndarray) -> np.ndarray | None:
        """The extra SID level of each item given only its group: ``keys`` (n,) the items' code
        keys (``sid_keys``), ``rank`` (n,) the order within a group (ties by row). None when
        the policy adds no level. Only for ``by_group`` policies."""
        raise NotImplementedError(f"the {self.name} policy does not resolve a group from its own rows")

    def build(
        self,
        codes: np.ndarray,
        *,
        sizes: Sequence[int],
        x: np.ndarray | None,
        decode: Decode | None,
        err: np.ndarray | None,
        retired: np.ndarray | None,
        suffix_reserve: int,
    ) -> Resolution:
        """SIDs for ``codes`` (n, L); ``err`` (n,) is each item's reconstruction error, when known."""
        raise NotImplementedError

    def place_new(
        self,
        codes: np.ndarray,
        *,
        view: IndexView,
        retired: np.ndarray,
        sizes: Sequence[int],
        x: np.ndarray | None,
        decode: Decode | None,
    ) -> Placement:
        """SIDs for new items' ``codes`` (m, L), in row order, never equal to a live or ``retired`` SID
        (policies that resolve collisions) and never moving a live one."""
        raise NotImplementedError
