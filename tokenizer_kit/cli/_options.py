"""CLI options derived from the config dataclasses: one option per setting, nothing written twice.

A verb declares a parameter annotated with a config class (``cfg: AlignStageConfig``); the
decorator :func:`settings_options` replaces it with one typer option per setting of that class
(name ``--kebab-case`` of the field, its default, its help, its choices), and calls the verb
with the config built from the options given on the command line, on top of ``--preset NAME``
and ``--config FILE`` where the verb has them. Errors from the library name settings
(``codebook_sizes``); :func:`flag_names` maps them to this verb's flags when they are printed.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from .._config import Setting, ValidatedConfig, config_error, parse_layers, read_config_file
from ..errors import TokenizerKitError

__all__ = ["settings_options", "flag", "flag_names", "with_flag_names"]


def flag(name: str) -> str:
    """``codebook_size`` -> ``--codebook-size``."""
    return "--" + name.replace("_", "-")


def flag_names(settings: typing.Iterable[Setting]) -> dict[str, str]:
    """Setting name (and each alias, a flag of its own) -> the CLI flag that sets it: the one mapping."""
    out: dict[str, str] = {}
    for s in settings:
        out[s.name] = flag(s.name)
        for a in s.aliases:
            out.setdefault(a, flag(a))
    return out


def with_flag_names(message: str, flags: dict[str, str], named: typing.Sequence[str] = ()) -> str:
    """``message`` with setting names written as this verb's flags.

    Library messages quote the settings they name (`` `codebook_sizes` ``); config errors list
    theirs in ``TokenizerKitError.settings`` (``named``); multi-word names (``max_tokens``)
    are unambiguous wherever they appear.
    """
    for name in sorted(flags, key=len, reverse=True):
        message = message.replace(f"`{name}`", flags[name])
        if name in named or "_" in name:
            message = re.sub(rf"(?<![\w`-])(?:\w+\.)?{re.escape(name)}\b(?![-`])", flags[name], message)
    return message


def _cli_type(s: Setting) -> tuple[Any, Any]:
    """(annotation for typer, default as typer shows it) of a setting."""
    tp, default = s.type, s.default
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    optional = origin in (typing.Union, getattr(__import__("types"), "UnionType")) and type(None) in args
    if optional:
        inner = [a for a in args if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else str
        origin = typing.get_origin(tp)
    if origin in (list, tuple):  # a comma-separated string, parsed by the config
        tp = str
        if default is not None:
            default = ",".join(str(v) for v in default)
    return (Optional[tp] if optional else tp), default


def _option(s: Setting, panel: str) -> inspect.Parameter:
    tp, default = _cli_type(s)
    names = (s.name, *s.aliases)  # an alias stays a flag of its own: the spelling users type keeps working
    decls = [f"{flag(n)}/--no-{n.replace('_', '-')}" for n in names] if tp is bool else [flag(n) for n in names]
    if s.short:
        decls.append(s.short)
    # choices and bounds are checked by the config (a one-line error like any other); --help
    # shows the choices as the metavar and the bounds after the help text
    metavar = "|".join(s.choices) if s.choices else None
    each = "each " if any(typing.get_origin(t) in (list, tuple) for t in (s.type, *typing.get_args(s.type))) else ""
    help = f"{s.help} Allowed: {each}{s.bounds}." if s.bounds else s.help
    info = typer.Option(default, *decls, help=help, rich_help_panel=panel, metavar=metavar,
                        show_default=default is not None and default != "")
    return inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=tp)


def _given(ctx: typer.Context, names: typing.Iterable[str], values: dict[str, Any]) -> dict[str, Any]:
    """The settings given on the command line (not left at their defaults)."""
    out = {}
    for n in names:
        src = ctx.get_parameter_source(n)
        if src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            out[n] = values[n]
    return out


def settings_options(*, stage: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator: each parameter of the verb annotated with a ``ValidatedConfig`` subclass
    becomes that class's options; the verb receives the built config. With ``stage``, the
    first config also takes ``--preset NAME`` and ``--config FILE`` (a JSON / TOML table of
    the same settings); the command line wins over the file, the file over the preset."""

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
        plain, configs = [], {}
        for p in sig.parameters.values():
            tp = hints.get(p.name)
            if isinstance(tp, type) and issubclass(tp, ValidatedConfig):
                configs[p.name] = tp
            else:
                plain.append(p.replace(annotation=hints.get(p.name, p.annotation)))
        options: list[inspect.Parameter] = []
        owned: dict[str, list[str]] = {}
        # the verb's own options too (``out`` -> ``--out``), for errors that name them
        flags: dict[str, str] = {}
        for p in plain:
            decls = getattr(p.default, "param_decls", None) or ()
            long = [d.split("/")[0] for d in decls if isinstance(p.default, typer.models.OptionInfo) and d.startswith("--")]
            if long:
                flags[p.name] = long[0]
        if "ids" in flags:  # the library's name for the same file
            flags["ids_path"] = flags["ids"]
        all_settings: dict[str, Setting] = {}
        for pname, cls in configs.items():
            settings = cls.cli_settings()
            all_settings.update({s.name: s for s in settings})
            flags.update(flag_names(settings))
            owned[pname] = [s.name for s in settings]
            options += [_option(s, f"{cls.label} settings") for s in settings]
        if stage is not None:
            options.append(inspect.Parameter("preset", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=typer.Option(
                None, "--preset", help=f"A named preset of {stage} settings (`tokenizer-kit presets`); options given here win.")))
            options.append(inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path], default=typer.Option(
                None, "--config", help="A JSON (or TOML) table of these settings, as in a pipeline config; options given here win.")))
        names = [p.name for p in plain] + [p.name for p in options]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise AssertionError(f"{fn.__name__}: settings {dup} clash with the verb's own parameters")

        @functools.wraps(fn)
        def wrapper(**kwargs):
            ctx = kwargs.pop("typer_context_")
            preset = kwargs.pop("preset", None)
            file = kwargs.pop("config_file", None)
            built = {}
            try:
                for i, (pname, cls) in enumerate(configs.items()):
                    given = _given(ctx, owned[pname], kwargs)
                    for n in owned[pname]:
                        kwargs.pop(n, None)
                    built[pname] = _build(cls, stage if i == 0 else None, preset if i == 0 else None, file if i == 0 else None, given)
                return fn(**kwargs, **built)
            except TokenizerKitError as e:
                raise type(e)(with_flag_names(str(e), flags, getattr(e, "settings", ()))) from e

        context = inspect.Parameter("typer_context_", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        wrapper.__signature__ = sig.replace(parameters=[*plain, *options, context])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in (*plain, *options, context)}
        wrapper.flag_names = flags  # type: ignore[attr-defined]
        wrapper.settings = all_settings  # type: ignore[attr-defined]
        return wrapper

    return deco


def _build(cls: type, stage: str | None, preset: str | None, file: Path | None, given: dict[str, Any]):
    if stage is None:
        return cls.from_dict(given)
    layers = [read_config_file(file) if file is not None else {}, given]
    cfg, errs = parse_layers(cls, stage, layers, preset)
    if errs:
        raise config_error(f"invalid {cls.label} settings: " + "; ".join(errs), *cls._named(errs), error_type=cls.error_type, usage=True)
    return cfg
