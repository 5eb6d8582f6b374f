"""What every CLI verb shares: error handling, JSON output, progress bars, logging.

Results go to stdout (a rich table, or JSON with ``--format json``); logs, progress and
errors go to stderr. A known error (``TokenizerKitError``, a missing file) prints as one
line and exits 2; set ``TOKENIZER_KIT_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from enum import Enum
from typing import Any, Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import TokenizerKitError

__all__ = [
    "OutputFormat",
    "err_console",
    "out_console",
    "cli_command",
    "holds_writer_lock",
    "emit_json",
    "progress_bar",
    "setup_logging",
    "fail",
]

err_console = Console(stderr=True)
out_console = Console()


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def setup_logging(verbose: bool = False) -> None:
    level = logging.INFO if verbose else logging.WARNING
    root = logging.getLogger("tokenizer_kit")
    if not any(getattr(h, "_tokenizer_kit", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        h._tokenizer_kit = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(level)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` as one line on stderr and exit ``code``."""
    one_line = " ".join(str(message).split())
    err_console.print(f"[bold red]error:[/] {escape(one_line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def cli_command(fn: Callable) -> Callable:
    """Wrap a verb: known errors become one stderr line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (TokenizerKitError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError) as e:
            if os.environ.get("TOKENIZER_KIT_DEBUG"):
                raise
            msg = str(e)
            if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
                msg = f"{msg}: {e.filename}"
            fail(msg)
        except KeyboardInterrupt:
            fail("interrupted; outputs written so far are whole (writes are atomic)", code=130)

    return wrapper


def holds_writer_lock(param: str, *, when: str | None = None) -> Callable[[Callable], Callable]:
    """Run a verb under the writer lock of the artifact its ``param`` names (only when the
    boolean option ``when`` is set, if given): a read-modify-write such as ``assign --update``
    or ``index`` then excludes every other writer of that artifact (``io.writer_lock``)."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if when is not None and not kwargs.get(when):
                return fn(*args, **kwargs)
            from ..io import writer_lock

            with writer_lock(kwargs[param]):
                return fn(*args, **kwargs)

        return wrapper

    return deco


def _jsonable(o: Any):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "__fspath__"):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def emit_json(obj: Any) -> None:
    """Machine-readable result on stdout (plain print: no rich markup or wrapping)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_jsonable) + "\n")
    sys.stdout.flush()


class _RichTask:
    def __init__(self, prog: Progress, task_id):
        self.prog, self.task_id = prog, task_id

    def advance(self, n: int = 1, **metrics: Any) -> None:
        self.prog.update(self.task_id, advance=n, metrics="  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))

    def close(self) -> None:
        pass

    def __enter__(self) -> "_RichTask":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _RichProgress:
    """``tokenizer_kit._progress.Progress`` drawn as rich bars on stderr, one per library task."""

    def __init__(self, prog: Progress):
        self.prog = prog

    def task(self, description: str, total: int | None = None, *, unit: str = "item", completed: int = 0) -> _RichTask:
        return _RichTask(self.prog, self.prog.add_task(description, total=total, completed=completed, metrics=""))


@contextlib.contextmanager
def progress_bar(*, enabled: bool = True) -> Iterator["_RichProgress | None"]:
    """Yield the ``progress`` to pass to a library call: bars on stderr in a terminal, else None."""
    if not enabled or not err_console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=err_console,
        transient=False,
    ) as prog:
        yield _RichProgress(prog)
