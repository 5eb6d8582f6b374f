"""What every CLI verb shares: error handling, exit codes, JSON output, progress, logging.

Results go to stdout (a rich table, or JSON with ``--format json``); logs, progress and
errors go to stderr. A known error prints as one ``error: ...`` line on stderr (set
``TOKENIZER_KIT_DEBUG=1`` for the traceback); under ``--format json`` stdout also gets
``{"error": {"type", "message", "exit_code"}}``, so stdout is one JSON document either way.

Exit codes: 0 done; 1 the inputs, an artifact or the run failed (a missing or malformed
file, an output that exists, a damaged tokenizer directory, a lock held elsewhere); 2 the
command is wrong (an unknown option, a missing argument, a value of the wrong type, a
setting out of range or in conflict, on the command line or in a config file); 130
interrupted.

Every verb takes ``-v/--verbose`` (INFO logs, and third-party libraries' own logs and
bars), ``-q/--quiet`` (results and errors only) and ``--log-level``. Progress: rich bars in a
terminal, one log line every few seconds otherwise (:class:`~tokenizer_kit._progress.LogProgress`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import sys
from enum import Enum
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from ..errors import TokenizerKitError, UsageError

__all__ = [
    "EXIT_INPUT",
    "EXIT_USAGE",
    "OutputFormat",
    "err_console",
    "out_console",
    "cli_command",
    "holds_writer_lock",
    "emit_json",
    "exit_code_of",
    "progress_bar",
    "note",
    "setup_logging",
    "status",
    "fail",
]

EXIT_INPUT = 1  # the inputs, an artifact or the run
EXIT_USAGE = 2  # the command line or the settings
EXIT_INTERRUPTED = 130

err_console = Console(stderr=True)
out_console = Console()


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


# ------------------------------------------------------------------------------------ logging
LOG_LEVELS = ("debug", "info", "warning", "error")
_state = {"quiet": False, "verbose": False}
# third-party switches set by the CLI (not by the user), so -v can take them back
_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
_THIRD_PARTY_LOGGERS = ("transformers", "datasets", "huggingface_hub", "gguf", "accelerate", "torch", "faiss", "sentence_transformers",
                        "open_clip", "urllib3", "filelock", "matplotlib", "PIL", "ray")


_env_ours: set[str] = set()
_WARN_MODULES = r"(transformers|torch|huggingface_hub|datasets|gguf|accelerate|open_clip|faiss|sentence_transformers)(\.|$)"


def quiet_third_party(quiet: bool) -> None:
    """Silence (or, with ``quiet`` False, restore) what other libraries print: transformers'
    "Loading weights" and gguf's "Converting and de-quantizing" bars (tqdm), Hugging Face
    progress bars, advisory warnings, and their loggers below ERROR."""
    import warnings

    if quiet:
        for k, v in _QUIET_ENV.items():  # for libraries imported later (and child processes)
            if k not in os.environ:
                os.environ[k] = v
                _env_ours.add(k)
        if not any(f[2] is None and f[0] == "ignore" and getattr(f[3], "pattern", None) == _WARN_MODULES for f in warnings.filters):
            warnings.filterwarnings("ignore", module=_WARN_MODULES)
    else:
        for k in list(_env_ours):
            os.environ.pop(k, None)
            _env_ours.discard(k)
        warnings.filters[:] = [f for f in warnings.filters if getattr(f[3], "pattern", None) != _WARN_MODULES]
    for name in _THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR if quiet else logging.NOTSET)
    _toggle_loaded_bars(quiet)


_tqdm_init: dict[str, Any] = {}


def _toggle_loaded_bars(quiet: bool) -> None:
    """Libraries already imported read their environment at import: switch them directly.
    tqdm (used as is by transformers' GGUF loader) gets ``disable=True`` as its default."""
    mods = sys.modules
    if "tqdm" in mods:
        from functools import partialmethod

        import tqdm.std

        orig = _tqdm_init.setdefault("init", tqdm.std.tqdm.__init__)
        tqdm.std.tqdm.__init__ = partialmethod(orig, disable=True) if quiet else orig  # type: ignore[method-assign]
    if "transformers" in mods:
        tl = mods["transformers"].utils.logging
        (tl.disable_progress_bar if quiet else tl.enable_progress_bar)()
        (tl.set_verbosity_error if quiet else tl.set_verbosity_warning)()
    if "huggingface_hub" in mods:
        hu = mods["huggingface_hub"].utils
        (hu.disable_progress_bars if quiet else hu.enable_progress_bars)()
    if "datasets" in mods:
        d = mods["datasets"]
        (d.disable_progress_bars if quiet else d.enable_progress_bars)()


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (not the one at setup: a test runner's is closed
    after the run, and a later log line would fail on it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbose: bool = False, *, quiet: bool = False, level: str | None = None) -> None:
    """Logs on stderr as ``LEVEL name: message``. Default: warnings, and progress lines
    outside a terminal; ``verbose``: INFO, third-party output left on; ``quiet``: errors only,
    no progress; ``level`` sets the level of every tokenizer-kit logger (progress included)."""
    if level is not None:
        lvl = getattr(logging, level.upper())
    else:
        lvl = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    root = logging.getLogger("tokenizer_kit")
    for h in [h for h in root.handlers if getattr(h, "_tokenizer_kit", False)]:
        root.removeHandler(h)  # an earlier in-process run's handler may hold a closed stream
    h = _StderrHandler()
    h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    h._tokenizer_kit = True  # type: ignore[attr-defined]
    root.addHandler(h)
    root.setLevel(lvl)
    # progress lines (LogProgress) show at the default level; --log-level and -q decide otherwise
    logging.getLogger("tokenizer_kit.progress").setLevel(logging.INFO if level is None and not quiet else logging.NOTSET)
    _state.update(quiet=quiet or lvl > logging.WARNING, verbose=verbose or lvl <= logging.INFO)
    quiet_third_party(not (verbose or lvl <= logging.DEBUG))


# ------------------------------------------------------------------------------------ errors
def exit_code_of(e: BaseException) -> int:
    """2 for a usage error (the command or its settings), 1 for the rest (inputs, artifacts, the run)."""
    return EXIT_USAGE if isinstance(e, UsageError) else EXIT_INPUT


def fail(message: str, code: int = EXIT_INPUT, *, json_error: bool = False, error_type: str = "error") -> None:
    """Print ``error: message`` as one line on stderr (and, with ``json_error``, an
    ``{"error": ...}`` document on stdout), then exit ``code``."""
    one_line = " ".join(str(message).split())
    if json_error:
        emit_json({"error": {"type": error_type, "message": one_line, "exit_code": code}})
    err_console.print(f"[bold red]error:[/] {escape(one_line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _error_message(e: BaseException) -> str:
    msg = str(e)
    if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
        msg = f"{msg}: {e.filename}"
    return msg


def _error_type(e: BaseException) -> str:
    if isinstance(e, UsageError):
        return "UsageError"
    return type(e).__name__


_KNOWN = (TokenizerKitError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError, IsADirectoryError)

_OUTPUT_OPTIONS = [
    ("verbose", bool, typer.Option(False, "--verbose", "-v", help="Log what happens (INFO), and let third-party libraries (transformers, "
                                   "datasets, tqdm) print their own logs and bars.", rich_help_panel="Output")),
    ("quiet", bool, typer.Option(False, "--quiet", "-q", help="Only results and errors: no progress, no warnings.", rich_help_panel="Output")),
    ("log_level", Optional[str], typer.Option(None, "--log-level", metavar="debug|info|warning|error", rich_help_panel="Output",
                                              help="Level of tokenizer-kit's logs on stderr (default: warnings, plus progress lines "
                                              "when stderr is not a terminal).")),
]


def cli_command(fn: Callable) -> Callable:
    """Wrap a verb: ``-v``/``-q``/``--log-level`` set up logging and progress; known errors
    become one stderr line (and a JSON error under ``--format json``) and exit 1 or 2."""
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name not in {n for n, _, _ in _OUTPUT_OPTIONS}]
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=tp, default=opt) for n, tp, opt in _OUTPUT_OPTIONS]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        verbose, quiet, level = kwargs.pop("verbose", False), kwargs.pop("quiet", False), kwargs.pop("log_level", None)
        as_json = kwargs.get("fmt") == OutputFormat.json
        try:
            if level is not None and level.lower() not in LOG_LEVELS:
                raise UsageError(f"--log-level must be one of {list(LOG_LEVELS)}, got {level!r}")
            setup_logging(verbose, quiet=quiet, level=None if level is None else level.lower())
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except _KNOWN as e:
            if os.environ.get("TOKENIZER_KIT_DEBUG"):
                raise
            fail(_error_message(e), exit_code_of(e), json_error=as_json, error_type=_error_type(e))
        except KeyboardInterrupt:
            fail("interrupted; outputs written so far are whole (writes are atomic)", EXIT_INTERRUPTED, json_error=as_json,
                 error_type="KeyboardInterrupt")

    wrapper.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    wrapper.__doc__ = reflow(fn.__doc__)
    return wrapper


def reflow(doc: str | None) -> str | None:
    """A docstring as --help shows it: each paragraph on one line (the terminal wraps it)."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


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
    """Machine-readable result on stdout (plain print: no rich markup or wrapping); indented
    unless it is large (a 10,000-row cold-start lookup: compact, ~10x faster to write)."""
    text = json.dumps(obj, default=_jsonable)
    if len(text) <= 100_000:
        text = json.dumps(obj, indent=2, default=_jsonable)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------ progress
def _fmt_metrics(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


class _RichTask:
    def __init__(self, prog: Progress, task_id):
        self.prog, self.task_id = prog, task_id
        self.metrics: dict[str, Any] = {}

    def advance(self, n: int = 1, **metrics: Any) -> None:
        self.metrics.update(metrics)
        self.prog.update(self.task_id, advance=n, metrics=_fmt_metrics(self.metrics))

    def close(self) -> None:
        task = self.prog._tasks.get(self.task_id)
        if task is not None and task.total is None:  # an open-ended task: show it as done
            self.prog.update(self.task_id, total=task.completed)
        self.prog.stop_task(self.task_id)

    def __enter__(self) -> "_RichTask":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _RichProgress:
    """``tokenizer_kit._progress.Progress`` drawn as rich bars on stderr, one per library task."""

    def __init__(self, prog: Progress):
        self.prog = prog

    def task(self, description: str, total: int | None = None, *, unit: str = "item", completed: int = 0) -> _RichTask:
        return _RichTask(self.prog, self.prog.add_task(description, total=total, completed=completed, metrics="", unit=unit))


class _RateColumn(ProgressColumn):
    """Items per second in the task's own unit (``12.3 steps/s``), or seconds per item when slow."""

    def render(self, task) -> Text:
        unit = task.fields.get("unit", "item")
        # rich's windowed speed needs two updates; a task advanced once (or finished) uses its mean
        speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed and task.completed else None)
        if not speed:
            return Text("", style="progress.data.speed")
        if speed < 1:
            return Text(f"{1 / speed:.1f} s/{unit}", style="progress.data.speed")
        return Text(f"{speed:,.3g} {unit}s/s" if speed < 1000 else f"{speed:,.0f} {unit}s/s", style="progress.data.speed")


def progress_every() -> float:
    """Seconds between progress log lines outside a terminal (``TOKENIZER_KIT_PROGRESS_EVERY``, default 5)."""
    try:
        return max(float(os.environ.get("TOKENIZER_KIT_PROGRESS_EVERY", "5")), 0.0)
    except ValueError:
        return 5.0


@contextlib.contextmanager
def progress_bar(*, enabled: bool = True) -> Iterator[Any]:
    """Yield the ``progress`` to pass to a library call: rich bars on stderr in a terminal
    (count, rate, elapsed, ETA, the loop's metrics such as loss), a log line every few
    seconds otherwise, None under ``-q``."""
    if not enabled or _state["quiet"]:
        yield None
        return
    if not err_console.is_terminal:
        from .._progress import LogProgress

        yield LogProgress(every=progress_every())
        return
    with Progress(
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=err_console,
        transient=False,
    ) as prog:
        yield _RichProgress(prog)


def note(message: str) -> None:
    """A line of rich markup on stderr for the person watching (nothing under ``-q``)."""
    if not _state["quiet"]:
        err_console.print(message, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner with ``message`` for a short step without a count (nothing under ``-q`` or
    outside a terminal)."""
    if _state["quiet"] or not err_console.is_terminal:
        yield
        return
    with err_console.status(message):
        yield
