"""Keys collected over a stream in bounded memory: held in RAM up to a budget, then spilled.

Counting whole-catalogue things (items per SID, duplicate item ids) needs every item's key
once. :class:`SpilledKeys` keeps int64 keys in memory up to ``budget`` keys (8 bytes each)
and beyond that appends them to ``parts`` files on disk, partitioned by a function of the key
chosen by the caller (for SIDs: ranges of the first-level code, so every prefix falls in one
partition). Reading back yields one partition at a time: memory is the budget plus the
largest partition.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

__all__ = ["SpilledKeys", "DEFAULT_KEY_BUDGET"]

logger = logging.getLogger(__name__)

# 32M keys = 256 MiB in memory before anything goes to disk (a 30M-item catalogue never spills)
DEFAULT_KEY_BUDGET = 1 << 25


class SpilledKeys:
    """int64 keys appended in batches; ``partitions()`` gives them back one partition at a time."""

    def __init__(
        self,
        parts: int,
        part_of: Callable[[np.ndarray], np.ndarray],
        *,
        budget: int = DEFAULT_KEY_BUDGET,
        spill_dir: str | os.PathLike | None = None,
    ):
        self.parts = max(1, int(parts))
        self.part_of = part_of
        self.budget = max(1, int(budget))
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self._buf: list[np.ndarray] = []
        self._held = 0
        self._dir: Path | None = None
        self.n = 0

    @property
    def spilled(self) -> bool:
        return self._dir is not None

    def add(self, keys: np.ndarray) -> None:
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        self.n += len(keys)
        self._buf.append(keys)
        self._held += len(keys)
        if self._held > self.budget:
            self._flush()

    def _flush(self) -> None:
        if self._dir is None:
            base = self.spill_dir if self.spill_dir is not None else None
            if base is not None:
                base.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=".tk-keys.", dir=base))
            logger.info("more than %d keys: spilling to %s in %d partitions", self.budget, self._dir, self.parts)
        keys = np.concatenate(self._buf)
        self._buf, self._held = [], 0
        part = np.asarray(self.part_of(keys), dtype=np.int64)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.parts + 1))
        for p in range(self.parts):
            a, b = bounds[p], bounds[p + 1]
            if b > a:
                with open(self._dir / f"{p}.bin", "ab") as f:
                    f.write(keys[order[a:b]].tobytes())

    def partitions(self) -> Iterator[np.ndarray]:
        """Every key exactly once, grouped by partition (one array per partition; unsorted).
        Without a spill, one array holds everything."""
        if self._dir is None:
            yield np.concatenate(self._buf) if self._buf else np.empty(0, np.int64)
            return
        if self._buf:
            self._flush()
        for p in range(self.parts):
            f = self._dir / f"{p}.bin"
            if f.exists():
                yield np.fromfile(f, dtype=np.int64)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._buf, self._held = [], 0

    def __enter__(self) -> "SpilledKeys":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
