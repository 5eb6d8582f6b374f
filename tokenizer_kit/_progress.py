"""Progress reporting from the library without printing.

Long loops (extraction, alignment steps, RQ-VAE epochs, encode/assign batches, retrieval
training and decoding) take ``progress: Progress | None``. They open one task per phase and
advance it; the caller decides how it is shown. The CLI passes a rich bar in a terminal and a
:class:`LogProgress` (one log line every few seconds) otherwise; ``None`` shows nothing.

    >>> with as_progress(progress).task("align", total=steps, unit="step") as t:
    ...     for step in range(steps):
    ...         ...
    ...         t.advance(1, loss=float(loss))
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

__all__ = ["Progress", "ProgressTask", "NullProgress", "LogProgress", "as_progress"]


class ProgressTask(Protocol):
    def advance(self, n: int = 1, **metrics: Any) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> "ProgressTask": ...

    def __exit__(self, *exc) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int | None = None, *, unit: str = "item", completed: int = 0) -> ProgressTask: ...


class _Task:
    """Base task: counts, rate, context manager; subclasses decide what to show."""

    def __init__(self, description: str, total: int | None, unit: str, completed: int = 0):
        self.description, self.total, self.unit = description, total, unit
        self.completed = self.start = completed  # start: where a resumed task began
        self.metrics: dict[str, Any] = {}
        self.t0 = time.monotonic()

    def advance(self, n: int = 1, **metrics: Any) -> None:
        self.completed += n
        self.metrics.update(metrics)
        self._update()

    def _update(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NullProgress:
    """Shows nothing (the library's default)."""

    def task(self, description: str, total: int | None = None, *, unit: str = "item", completed: int = 0) -> _Task:
        return _Task(description, total, unit, completed)


class _LogTask(_Task):
    """Log lines of one task. A line reports work done: none while nothing has advanced (a
    worker pool still starting is not progress), and a task that fails says so in its last
    line, which then comes before the caller's error and never after it."""

    def __init__(self, logger: logging.Logger, every: float, *args):
        super().__init__(*args)
        self.logger, self.every = logger, every
        self.last = self.t0
        self.logged = False
        self.failed = False

    def _line(self, final: bool = False) -> str:
        el = max(time.monotonic() - self.t0, 1e-9)
        rate = (self.completed - self.start) / el  # this run's rate, not a resumed task's total
        parts = [f"{self.description}: {self.completed}" + (f"/{self.total}" if self.total else "") + f" {self.unit}s"]
        parts.append(f"{rate:.3g} {self.unit}s/s")
        if self.total and rate > 0 and not final:
            parts.append(f"eta {max(self.total - self.completed, 0) / rate:.0f}s")
        parts.append(f"elapsed {el:.0f}s")
        parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.metrics.items()]
        return ", ".join(parts) + (", stopped by an error" if self.failed else "")

    def _update(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.every and self.completed > self.start:
            self.last = now
            self.logged = True
            self.logger.info("%s", self._line())

    def close(self) -> None:
        # a task shorter than one interval ends silently (a log shows what took time), and so
        # does one that did nothing: "0/320 items, 0 items/s" tells a reader nothing
        if self.completed > self.start and (self.logged or time.monotonic() - self.t0 >= self.every):
            self.logger.info("%s", self._line(final=True))

    def __exit__(self, exc_type, *exc) -> None:
        self.failed = exc_type is not None
        self.close()


class LogProgress:
    """One INFO log line per task every ``every`` seconds, and one when it ends if it ran
    that long (for logs and pipes, where a bar would only add noise)."""

    def __init__(self, logger: logging.Logger | None = None, every: float = 5.0):
        self.logger = logger or logging.getLogger("tokenizer_kit.progress")
        self.every = every

    def task(self, description: str, total: int | None = None, *, unit: str = "item", completed: int = 0) -> _Task:
        return _LogTask(self.logger, self.every, description, total, unit, completed)


def as_progress(progress: Progress | None) -> Progress:
    """``progress`` itself, or a reporter that shows nothing."""
    return NullProgress() if progress is None else progress
