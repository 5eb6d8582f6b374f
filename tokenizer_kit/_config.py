"""Shared behaviour of the dataclass configs: one source per setting, validated all at once.

A stage's config dataclass is the single source of each setting's name, default, help text
and validation. Config files (TOML / JSON tables), Python dicts and the CLI's options are all
derived from its fields:

- ``setting(default, help=..., bounds=..., choices=...)`` declares a field with its help text,
  the values it allows (read by the validator and shown by ``--help``) and hints for the CLI
  (``short="-o"``, ``cli=False`` to keep it off the command line, ``aliases`` for old names);
- ``ValidatedConfig.parse(d)`` turns a dict (file table, CLI values) into a config and returns
  every problem at once: unknown keys, wrong types, declared choices and bounds, then the
  config's own ``errors()`` (rules between settings); ``from_dict`` raises them as one error;
- a nested config field listed in ``flatten`` (``AlignConfig.qformer``) exposes its settings
  at the top level (``d_model``, not ``qformer.d_model``), so one table holds a stage;
- ``settings_of(cls)`` lists the (flattened) settings: what the CLI turns into options.

Errors name settings, never CLI flags: ``TokenizerKitError.settings`` lists the settings a
message is about, and the CLI maps them to its ``--flag`` names when it prints the message.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import re
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from .errors import TokenizerKitError, usage_error_type

__all__ = [
    "Bounds",
    "ValidatedConfig",
    "base_config",
    "Setting",
    "setting",
    "settings_of",
    "coerce",
    "config_error",
    "list_presets",
    "load_preset",
    "parse_layers",
    "preset_note",
    "read_config_file",
]


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a number: ``lo``/``hi`` (None: open), each end inclusive unless
    ``lo_open``/``hi_open``. ``str()`` is what a message says: ``>= 1``, ``> 0``, ``in [0, 1)``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    @classmethod
    def of(cls, spec: "Bounds | tuple[Any, Any] | str") -> "Bounds":
        """``(lo, hi)`` (inclusive, None: open), an interval ``"[0, 1)"`` / ``"(0, inf)"``, or a ``Bounds``."""
        if isinstance(spec, Bounds):
            return spec
        if isinstance(spec, tuple):
            return cls(*spec)
        m = re.fullmatch(r"\s*([\[(])\s*(-inf|[-+.\deE]+)\s*,\s*(inf|[-+.\deE]+)\s*([\])])\s*", spec)
        if m is None:
            raise ValueError(f"bounds {spec!r} is not an interval like '[0, 1)' or '(0, inf)'")

        def num(t: str) -> float | None:
            return None if t.endswith("inf") else (int(t) if re.fullmatch(r"[-+]?\d+", t) else float(t))

        return cls(num(m[2]), num(m[3]), m[1] == "(", m[4] == ")")

    def contains(self, v: float) -> bool:
        if v != v:  # NaN is in no range
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def __str__(self) -> str:
        if self.hi is None and self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        if self.lo is None and self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi}"
        lo, hi = ("-inf" if self.lo is None else self.lo), ("inf" if self.hi is None else self.hi)
        return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


def setting(
    default: Any = MISSING,
    *,
    help: str,
    default_factory: Any = MISSING,
    short: str | None = None,
    choices: typing.Sequence[str] | typing.Mapping[str, Any] | None = None,
    cli: bool = True,
    aliases: typing.Sequence[str] = (),
    bounds: Bounds | tuple[Any, Any] | str | None = None,
    nonempty: bool = False,
    **meta: Any,
):
    """A config field that carries its own help text, CLI hints and allowed values.

    ``short``: a one-letter CLI alias (``"-o"``). ``choices``: the allowed values; a mapping
    (a registry such as the collision policies) is read each time, so later entries count. ``cli=False``: a setting kept off the
    command line (set by the program, e.g. a feature dimension read from the store).
    ``aliases``: other names of the same setting, accepted as config keys (older files and
    artifacts keep loading) and as CLI flags (``--codebook-size`` for ``codebook_sizes``).
    ``bounds``: the range of a number, ``(lo, hi)`` inclusive (either end None: open) or an
    interval string with open ends (``"(0, inf)"``, ``"[0, 1)"``); for a list, of each
    element. ``nonempty``: a list must hold at least one value. Bounds and choices are checked
    by ``validate``/``parse`` (a None value is not checked) and shown by ``--help``.

    >>> steps: int = setting(3000, help="Training steps.", bounds=(1, None))
    """
    if choices is not None and not isinstance(choices, typing.Mapping):
        choices = tuple(choices)
    md = {"help": help, "short": short, "choices": choices, "cli": cli, "aliases": tuple(aliases),
          "bounds": None if bounds is None else Bounds.of(bounds), "nonempty": nonempty, **meta}
    return field(default=default, default_factory=default_factory, metadata=md)


# ----------------------------------------------------------------------------- types
def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        s = " or ".join(_describe(a) for a in inner)
        return s + (" (or none)" if len(inner) < len(args) else "")
    if origin in (list, tuple):
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s (or a comma-separated string)"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


class _Bad(Exception):
    pass


def _coerce(value: Any, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a)
            except _Bad:
                continue
        raise _Bad
    if origin in (list, tuple):
        elem = args[0] if args else Any
        if isinstance(value, str):
            items = [p.strip() for p in value.split(",") if p.strip()]
            if elem is int:
                try:
                    items = [int(p) for p in items]
                except ValueError:
                    raise _Bad from None
        elif isinstance(value, (list, tuple)):
            items = [_coerce(v, elem) for v in value]
        elif elem is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            items = [value]
        else:
            raise _Bad
        return tuple(items) if origin is tuple else list(items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Bad
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _Bad
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _Bad
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, Path):
            return str(value)
        raise _Bad
    return value


def coerce(value: Any, tp: Any, name: str) -> Any:
    """``value`` as type ``tp`` (a field annotation), or a ``TokenizerKitError`` naming ``name``.

    Lists and tuples also take a comma-separated string (``"256"``, ``"title,brand"``), the
    form a command line or a config file gives; numbers are never parsed from strings.
    """
    try:
        return _coerce(value, tp)
    except _Bad:
        raise config_error(f"{name}: expected {_describe(tp)}, got {value!r}", name, usage=True) from None


def config_error(message: str, *settings: str, error_type: type[TokenizerKitError] = TokenizerKitError,
                 usage: bool = False) -> TokenizerKitError:
    """An error whose message is about ``settings`` (the CLI names their flags instead).
    ``usage``: the settings themselves are wrong (a bad value, a conflict), not the input:
    the error is also a :class:`~tokenizer_kit.errors.UsageError` (the CLI exits 2)."""
    e = (usage_error_type(error_type) if usage else error_type)(message)
    e.settings = tuple(settings)  # type: ignore[attr-defined]
    return e


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Setting:
    """One user-facing setting of a config class (after flattening nested configs)."""

    name: str
    type: Any
    default: Any
    help: str
    owner: type  # the dataclass that declares the field
    path: tuple[str, ...]  # attribute path from the top config, e.g. ("qformer", "d_model")
    short: str | None = None
    choices: tuple[str, ...] | None = None
    cli: bool = True
    aliases: tuple[str, ...] = ()
    bounds: Bounds | None = None
    nonempty: bool = False

    def value_errors(self, v: Any) -> list[str]:
        """What is wrong with value ``v`` by this setting's own declaration: its type (for
        a config built in Python, not parsed), choices, bounds and emptiness."""
        try:
            v = _coerce(v, self.type)
        except _Bad:
            return [f"{self.name}: expected {_describe(self.type)}, got {v!r}"]
        if v is None:
            return []
        if self.choices and v not in self.choices:
            return [f"{self.name} must be one of {list(self.choices)}, got {v!r}"]
        if isinstance(v, (list, tuple)):
            if self.nonempty and not v:
                return [f"{self.name} must not be empty"]
            many = [(f"{self.name}[{i}]", x) for i, x in enumerate(v)]
        else:
            many = [(self.name, v)]
        b = self.bounds
        return [f"{n} must be {b}, got {x!r}" for n, x in many
                if b is not None and isinstance(x, numbers.Real) and not isinstance(x, bool) and not b.contains(x)]


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return MISSING


def settings_of(cls: type, _path: tuple[str, ...] = ()) -> list[Setting]:
    """The settings of config class ``cls``, nested configs in ``cls.flatten`` expanded."""
    out: list[Setting] = []
    hints = _hints(cls)
    for f in fields(cls):
        if f.name in getattr(cls, "flatten", ()):
            out.extend(settings_of(hints[f.name], _path + (f.name,)))
            continue
        md = f.metadata
        out.append(
            Setting(
                name=f.name, type=hints[f.name], default=_field_default(f), help=md.get("help", ""), owner=cls,
                path=_path + (f.name,), short=md.get("short"),
                choices=None if md.get("choices") is None else tuple(md["choices"]), cli=md.get("cli", True),
                aliases=tuple(md.get("aliases", ())), bounds=md.get("bounds"), nonempty=md.get("nonempty", False),
            )
        )
    return out


class ValidatedConfig:
    """Mixin for dataclass configs: set ``label`` and, for another error type than
    ``TokenizerKitError``, ``error_type``. Each setting declares its own choices and bounds
    (``setting(...)``); ``errors() -> list[str]`` holds only the rules between settings (a
    conflict, a divisibility) and what no declaration can say. ``flatten`` names nested config
    fields whose settings live at the top level of a table."""

    label: ClassVar[str] = "config"
    error_type: ClassVar[type[TokenizerKitError]] = TokenizerKitError
    flatten: ClassVar[tuple[str, ...]] = ()
    # old key -> current key: an error naming the new key in config files and on the command
    # line, accepted silently with ``legacy=True`` (artifacts saved before the rename)
    renamed: ClassVar[dict[str, str]] = {}

    def errors(self) -> list[str]:  # pragma: no cover - subclasses define it
        return []

    def all_errors(self) -> list[str]:
        """The choices, bounds and types every ``setting(...)`` declares, then ``errors()``
        (the rules between settings)."""
        errs = [e for s in settings_of(type(self)) for e in s.value_errors(self.get(s.name))]
        return errs + [e for e in self.errors() if e not in errs]

    def get(self, name: str) -> Any:
        """A (flattened) setting's value by name."""
        for s in settings_of(type(self)):
            if s.name == name:
                obj = self
                for p in s.path:
                    obj = getattr(obj, p)
                return obj
        raise KeyError(name)

    def validate(self):
        """Raise one error listing every problem, or return ``self``."""
        errs = self.all_errors()
        if errs:
            raise config_error(f"invalid {self.label} config: " + "; ".join(errs), *self._named(errs), error_type=self.error_type,
                               usage=True)
        return self

    @classmethod
    def _named(cls, errs: list[str]) -> list[str]:
        text = " ".join(errs)
        names = {s.name for s in settings_of(cls)} | {s.name for s in cls.cli_settings()}
        return sorted(n for n in names if re.search(rf"\b{re.escape(n)}\b", text))

    @classmethod
    def cli_settings(cls) -> list[Setting]:
        """The settings the command line takes (all but ``setting(cli=False)`` ones)."""
        return [s for s in settings_of(cls) if s.cli]

    @classmethod
    def known_keys(cls) -> set[str]:
        return {n for s in settings_of(cls) for n in (s.name, *s.aliases)} | set(cls.flatten)

    @classmethod
    def parse(cls, d: dict[str, Any] | None = None, *, check: bool = True, legacy: bool = False) -> tuple[Any, list[str]]:
        """``(config, errors)`` from a dict of settings: unknown keys, wrong types and (with
        ``check``) the config's own ``errors()``, all at once; ``config`` is None when the
        keys or types are wrong. Flattened nested settings may be given at the top level or
        as a nested table. ``legacy``: accept the old names of renamed settings."""
        d = dict(d or {})
        errs: list[str] = []
        for old, new in cls.renamed.items():
            if old in d:
                if legacy:
                    d.setdefault(new, d.pop(old))
                else:
                    d.pop(old)
                    errs.append(f"{old} is now called {new}")
        known = {s.name: s for s in settings_of(cls)}
        given_as = cls._resolve_aliases(d, errs)
        unknown = sorted(set(d) - set(known) - set(cls.flatten))
        if unknown:  # a typo'd key would otherwise be silently ignored
            errs.append(f"unknown keys {unknown} (known: {sorted(known)})")
        values: dict[str, Any] = {}
        for name in cls.flatten:  # a nested table, e.g. a saved config's "qformer": {...}
            sub = d.get(name)
            if sub is None:
                continue
            if dataclasses.is_dataclass(sub):
                sub = dataclasses.asdict(sub)
            if not isinstance(sub, dict):
                errs.append(f"{name}: expected a table of settings, got {sub!r}")
                continue
            for k, v in sub.items():
                if k in known and known[k].path[0] == name:
                    d.setdefault(k, v)
                else:
                    errs.append(f"unknown key {name}.{k}")
        for k, v in d.items():
            s = known.get(k)
            if s is None:
                continue
            try:
                values[k] = coerce(v, s.type, given_as.get(k, k))
            except TokenizerKitError as e:
                errs.append(str(e))
        # the values that are fine still get their range and conflict checks, so a wrong type
        # in one setting does not hide an out-of-range value in another
        bad = bool(errs)
        obj = cls._build(values)
        if check:
            errs.extend(e for e in obj.all_errors() if e not in errs)
        return (None if bad else obj), errs

    @classmethod
    def _resolve_aliases(cls, d: dict[str, Any], errs: list[str]) -> dict[str, str]:
        """Keys of ``d`` given by a setting's alias renamed to the setting (in place); returns
        setting -> the alias it was given as, so a message names the key the user wrote."""
        alias_of = {a: s.name for s in settings_of(cls) for a in s.aliases}
        given_as = {}
        for k in [k for k in d if k in alias_of]:
            name = alias_of[k]
            if name in d:
                errs.append(f"{k} and {name} are the same setting; give one")
                d.pop(k)
            else:
                d[name] = d.pop(k)
                given_as[name] = k
        return given_as

    @classmethod
    def _build(cls, values: dict[str, Any]):
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {n: {} for n in cls.flatten}
        hints = _hints(cls)
        for s in settings_of(cls):
            if s.name in values:
                if len(s.path) == 1:
                    top[s.name] = values[s.name]
                else:
                    nested[s.path[0]][s.name] = values[s.name]
        for n, sub in nested.items():
            top[n] = hints[n]._build(sub)
        return cls(**top)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, legacy: bool = False):
        """Build from a dict and validate; every problem in one error (unknown keys, types,
        ranges, conflicts), which names the settings it is about."""
        obj, errs = cls.parse(d, legacy=legacy)
        if errs:
            raise config_error(f"invalid {cls.label} config: " + "; ".join(errs), *cls._named(errs), error_type=cls.error_type,
                               usage=True)
        return obj

    def to_flat_dict(self) -> dict[str, Any]:
        """Every setting by (flattened) name: what a config file's table holds."""
        out = {}
        for s in settings_of(type(self)):
            v = self.get(s.name)
            out[s.name] = list(v) if isinstance(v, tuple) else v
        return out

    def replace(self, **changes: Any):
        """A copy with some (flattened) settings changed, validated."""
        return type(self).from_dict({**self.to_flat_dict(), **changes})


def base_config(cfg: ValidatedConfig, base: type) -> Any:
    """The ``base`` library config holding ``cfg``'s values: a stage config's extra settings
    dropped (the library component is handed the config it defines, nothing more)."""
    return base._build({s.name: cfg.get(s.name) for s in settings_of(base)})


# ----------------------------------------------------------------------------- presets
_PRESETS = Path(__file__).parent / "presets"


def list_presets(stage: str | None = None) -> list[str]:
    """Named presets shipped in the package (``tokenizer_kit/presets/<stage>/<name>.json``):
    names for one ``stage``, or ``stage/name`` for all."""
    if stage is not None:
        return sorted(p.stem for p in (_PRESETS / stage).glob("*.json"))
    return sorted(f"{p.parent.name}/{p.stem}" for p in _PRESETS.glob("*/*.json"))


def load_preset(stage: str, name: str) -> dict[str, Any]:
    """The settings of preset ``name`` for ``stage`` (its ``_comment`` key dropped)."""
    p = _PRESETS / stage / f"{name}.json"
    if not p.is_file():
        avail = list_presets(stage)
        raise config_error(f"no preset {name!r} for {stage}; available: {avail or 'none'}", "preset", usage=True)
    d = json.loads(p.read_text())
    return {k: v for k, v in d.items() if not k.startswith("_")}


def preset_note(stage: str, name: str) -> str:
    """What a preset is for, and the evidence behind it (its ``_comment``)."""
    p = _PRESETS / stage / f"{name}.json"
    return str(json.loads(p.read_text()).get("_comment", "")) if p.is_file() else ""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML (or, for ``*.json``, JSON) file as a dict; a one-line error when it cannot be read."""
    path = Path(path)
    if path.is_dir():
        raise TokenizerKitError(f"config {path} is a directory; pass a TOML (or JSON) file")
    if not path.is_file():
        raise TokenizerKitError(f"config {path} does not exist; pass an existing TOML (or JSON) file")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise TokenizerKitError(f"config {path} cannot be read as UTF-8 text ({e})") from None
    try:
        if path.suffix == ".json":
            d = json.loads(text)
        else:
            import tomllib

            d = tomllib.loads(text)
    except ValueError as e:  # JSONDecodeError and TOMLDecodeError both are
        raise TokenizerKitError(f"{path}: cannot parse ({e}); expected TOML (or JSON for *.json)") from None
    if not isinstance(d, dict):
        raise TokenizerKitError(f"{path}: expected a table of settings, got {type(d).__name__}")
    return d


def parse_layers(cls: type, stage: str | None, layers: typing.Iterable[dict[str, Any] | None], preset: str | None = None) -> tuple[Any, list[str]]:
    """``(config, errors)`` of ``cls`` from its defaults, then the named ``preset`` of
    ``stage``, then each of ``layers`` (a later layer wins). Without ``preset``, a ``preset``
    key in a layer names one."""
    merged: dict[str, Any] = {}
    errs: list[str] = []
    named = None
    for layer in layers:
        layer = dict(layer or {})
        named = layer.pop("preset", named)
        merged.update(layer)
    preset = preset if preset is not None else named
    if preset is not None:
        try:
            merged = {**load_preset(stage or cls.label, preset), **merged}
        except TokenizerKitError as e:
            errs.append(str(e))
    cfg, perrs = cls.parse(merged)
    return cfg, errs + perrs
