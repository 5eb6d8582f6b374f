"""The settings of each pipeline stage: one dataclass each (verbs outside the pipeline, and
inputs' column names: ``_verb_configs``).

Where a library component already has a config (``ExtractConfig``, ``PairMiningConfig``,
``AlignConfig``, ``IndexConfig``, ``RetrievalConfig``, the quantizer configs), the stage's
config is that class, or a subclass adding the few settings the stage reads besides (which
part of the log to mine, the training device, ...). The CLI options and the pipeline's table
keys are these fields; nothing else declares a setting's name or default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._config import Setting, ValidatedConfig, coerce, settings_of, setting
from ..alignment import AlignRunConfig, EmbedSettings, PairMiningConfig
from ..companion import RetrievalConfig
from ..engines import EngineConfig
from ..errors import TokenizerKitError
from ..features import ExtractConfig
from ..quantizers import get_config_class, list_methods

__all__ = ["AlignStageConfig", "CodebookConfig", "EmbedConfig", "ExtractConfig", "ExtractStageConfig", "MinePairsConfig",
           "RetrievalStageConfig"]


@dataclass
class ExtractStageConfig(ExtractConfig):
    """``ExtractConfig`` plus where the shards run (``engine``, ``workers``, ...)."""

    label: ClassVar[str] = "extract"
    flatten: ClassVar[tuple[str, ...]] = ("execution",)

    execution: EngineConfig = field(default_factory=EngineConfig)

    def errors(self) -> list[str]:
        return super().errors() + self.execution.errors()


@dataclass
class MinePairsConfig(PairMiningConfig):
    label: ClassVar[str] = "mine-pairs"

    split: bool = setting(True, help="Mine only the training part of a leave-one-out split (default) or the whole log.")


@dataclass
class AlignStageConfig(AlignRunConfig):
    label: ClassVar[str] = "align"
    # former option names, named in the error when a config uses them
    renamed: ClassVar[dict[str, str]] = {"layers": "n_layers", "heads": "n_heads", "queries": "n_queries"}


@dataclass
class EmbedConfig(EmbedSettings):
    """``EmbedSettings`` (pooling, batch, token cap) plus the device and where the shards run."""

    flatten: ClassVar[tuple[str, ...]] = ("execution",)

    device: str | None = setting(None, help="cpu, cuda or cuda:N (default: cuda when available).")
    shard_size: int = setting(16384, help="Items per output shard with the ray engine (rounded to whole batches; the resume unit).",
                              bounds=(1, None))
    execution: EngineConfig = field(default_factory=EngineConfig)

    def errors(self) -> list[str]:
        return self.execution.errors()


# the quantizer settings build-codebook takes on the command line (the rest: a config file)
_QUANTIZER_OPTIONS = {
    "rq-kmeans": ("seed", "device", "niter", "max_points_per_centroid", "init", "balanced", "beam_size"),
    "rq-vae": ("seed", "device", "max_epochs", "checkpoint_dir", "resume_from"),
}


@dataclass
class CodebookConfig(ValidatedConfig):
    """Build-codebook settings: the method, its shape, and any setting of the method's own
    config (``RQKMeansConfig`` / ``RQVAEConfig`` field names) in the same table."""

    label: ClassVar[str] = "codebook"
    renamed: ClassVar[dict[str, str]] = {"epochs": "max_epochs", "resume": "resume_from"}

    method: str = setting("rq-kmeans", help="Quantizer: rq-kmeans (residual k-means) or rq-vae.", choices=("rq-kmeans", "rq-vae"))
    levels: int = setting(3, help="Number of code levels L_t.", bounds=(1, None))
    # the quantizers' name; codebook_size (the flag README and older configs use) stays an alias
    codebook_sizes: list[int] = setting(
        help="Codes per level: one size for every level (256) or one per level (8192,8192,8192; the paper's, for "
        "catalogues of millions).",
        default_factory=lambda: [256],
        aliases=("codebook_size",),
        bounds=(2, None),
        nonempty=True,
    )
    normalize: bool = setting(False, help="L2-normalise embeddings before quantizing.")
    index: bool = setting(
        True,
        help="Also build the SID index (suffix policy: one item per SID, the trie), so assign --update, lookup and "
        "constrained decoding work at once; --no-index skips it (`tokenizer-kit index` builds one later).",
    )
    # the method's own settings, by their field names (validated against its config class)
    quantizer: dict[str, Any] = field(default_factory=dict, metadata={"help": "", "cli": False})

    def sizes_per_level(self) -> list[int]:
        """``codebook_sizes`` with one size repeated for each of ``levels``: the quantizer's."""
        sizes = list(self.codebook_sizes)
        return sizes * self.levels if len(sizes) == 1 else sizes

    def errors(self) -> list[str]:
        # the number of sizes against levels, then the method's own checks on the result
        e = []
        shape_ok = self.levels >= 1 and all(k >= 2 for k in self.codebook_sizes)
        if self.levels >= 1 and len(self.codebook_sizes) not in (1, self.levels):
            e.append(f"codebook_sizes lists {len(self.codebook_sizes)} sizes for {self.levels} levels; give one size or one per level")
            shape_ok = False
        if self.method in list_methods():
            # a shape already reported above is left to the method's default, not reported twice
            sizes = {"codebook_sizes": self.sizes_per_level()} if shape_ok and self.codebook_sizes else {}
            e += get_config_class(self.method).parse({**self.quantizer, **sizes})[1]
        return e

    @classmethod
    def parse(cls, d: dict[str, Any] | None = None, *, check: bool = True, legacy: bool = False):
        d = dict(d or {})
        renamed = [f"{old} is now called {new}" for old, new in cls.renamed.items() if old in d]
        d = {k: v for k, v in d.items() if k not in cls.renamed}
        own_names = {s.name for s in settings_of(cls)}
        own = {k: d.pop(k) for k in list(d) if k in cls.known_keys()}
        quantizer = {**own.pop("quantizer", {}), **d}
        obj, errs = super().parse(own, check=False, legacy=legacy)
        errs = renamed + errs
        method = own.get("method", "rq-kmeans")
        if not isinstance(method, str) or method not in list_methods():
            return None, errs + [f"method must be one of {list_methods()}, got {method!r}"]
        qcls = get_config_class(method)
        given_as = qcls._resolve_aliases(quantizer, errs)
        qnames = {s.name for s in settings_of(qcls)}
        others = {m: {s.name for s in settings_of(get_config_class(m))} for m in list_methods() if m != method}
        typed: dict[str, Any] = {}
        for k, v in quantizer.items():
            if k in qnames:
                s = next(s for s in settings_of(qcls) if s.name == k)
                try:
                    typed[k] = coerce(v, s.type, given_as.get(k, k))
                except TokenizerKitError as e:
                    errs.append(str(e))
            else:
                owner = [m for m, names in others.items() if k in names]
                errs.append(f"{k} applies to {owner[0]}, not {method}" if owner else f"unknown key {k!r} for {method} "
                            f"(known: {sorted(own_names - {'quantizer'} | qnames - {'codebook_sizes'})})")
        bad = bool(errs)
        # check what parsed, with defaults standing in for what did not: one pass finds all
        probe = obj if obj is not None else cls()
        probe.quantizer = typed
        if check:
            errs += [e for e in probe.all_errors() if e not in errs]
        return (None if bad else probe), errs

    @classmethod
    def cli_settings(cls) -> list[Setting]:
        """Its own settings and the quantizer settings the command line takes."""
        first: dict[str, Setting] = {}
        methods: dict[str, list[str]] = {}
        for method, names in _QUANTIZER_OPTIONS.items():
            q = {s.name: s for s in settings_of(get_config_class(method))}
            for n in names:
                if n in first and first[n].default != q[n].default:
                    raise AssertionError(f"{n}: the methods' defaults differ, so it cannot be one option")
                first.setdefault(n, q[n])
                methods.setdefault(n, []).append(method)
        out = [s for s in settings_of(cls) if s.cli]
        for n, s in first.items():
            only = f" ({methods[n][0]} only)" if len(methods[n]) < len(_QUANTIZER_OPTIONS) else ""
            out.append(dataclasses.replace(s, help=s.help + only))
        return out

    def get(self, name: str) -> Any:
        if name in self.quantizer:
            return self.quantizer[name]
        return super().get(name)

    def to_flat_dict(self) -> dict[str, Any]:
        d = {s.name: self.get(s.name) for s in settings_of(type(self)) if s.name != "quantizer"}
        return {**d, **self.quantizer}

    def quantizer_config(self):
        """The method's config (``RQKMeansConfig`` / ``RQVAEConfig``), validated."""
        qcls = get_config_class(self.method)
        return qcls.from_dict({**self.quantizer, "codebook_sizes": self.sizes_per_level()})


@dataclass
class RetrievalStageConfig(RetrievalConfig):
    label: ClassVar[str] = "retrieval"
    renamed: ClassVar[dict[str, str]] = {**RetrievalConfig.renamed, "layers": "n_layers", "heads": "n_heads", "beam": "beam_size",
                                         "threads": "cpu_threads"}

    max_users: int | None = setting(None, help="Use only the first N users (quick runs).", bounds=(1, None))
