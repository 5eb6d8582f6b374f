"""Each setting declares its own range and choices; the validator and the CLI both read them."""

import importlib

import pytest
from typer.testing import CliRunner

from tokenizer_kit._config import Bounds, ValidatedConfig, settings_of
from tokenizer_kit.errors import TokenizerKitError

# every module that defines a config class (torch-free: only the settings are imported)
_MODULES = ("tokenizer_kit.pipeline", "tokenizer_kit.quantizers", "tokenizer_kit.quantizers._plan", "tokenizer_kit.quantizers._external",
            "tokenizer_kit.generative._sid_lm", "tokenizer_kit.features._extract", "tokenizer_kit.companion._config")


def _config_classes() -> list[type]:
    for m in _MODULES:
        importlib.import_module(m)
    out, todo = [], list(ValidatedConfig.__subclasses__())
    while todo:
        c = todo.pop()
        out.append(c)
        todo += c.__subclasses__()
    return sorted(set(out), key=lambda c: (c.__module__, c.__name__))


def _outside(b: Bounds):
    if b.lo is not None:
        return b.lo if b.lo_open else b.lo - 1
    return b.hi if b.hi_open else b.hi + 1


def test_every_declared_bound_rejects_out_of_range_values_naming_the_setting():
    checked = 0
    for cls in _config_classes():
        for s in settings_of(cls):
            if s.bounds is None:
                continue
            bad = _outside(s.bounds)
            listy = "list" in str(s.type) or "tuple" in str(s.type)
            _, errs = cls.parse({s.name: [bad] if listy else bad})
            name = f"{s.name}[0]" if listy else s.name
            mine = [e for e in errs if e.startswith(f"{name} must be {s.bounds}, got ")]
            assert mine, (cls.__name__, s.name, errs)
            with pytest.raises(TokenizerKitError) as e:
                cls.from_dict({s.name: [bad] if listy else bad})
            assert "\n" not in str(e.value) and name in str(e.value), (cls.__name__, s.name)
            checked += 1
    assert checked > 90  # the declarations are there to bite


def test_bounds_read_as_written():
    assert str(Bounds.of((1, None))) == ">= 1" and str(Bounds.of("(0, inf)")) == "> 0"
    assert str(Bounds.of("[0, 1)")) == "in [0, 1)" and str(Bounds.of((0, 2**30))) == "in [0, 1073741824]"
    b = Bounds.of("[0, 0.5)")
    assert b.contains(0) and not b.contains(0.5) and not b.contains(float("nan"))
    with pytest.raises(ValueError):
        Bounds.of("0..1")


def test_messages_keep_their_text():
    from tokenizer_kit.pipeline import stage_config
    from tokenizer_kit.quantizers import RQKMeansConfig

    with pytest.raises(ValueError, match=r"invalid align config: steps must be >= 1, got -5; lr must be > 0, got 0.0; "
                                         r"min_lr_ratio must be in \[0, 1\], got 2.0"):
        stage_config("align", {"steps": -5, "lr": 0.0, "min_lr_ratio": 2.0})
    # a config built in Python gets its type checked too
    assert RQKMeansConfig(codebook_sizes=[8, 2.5]).all_errors() == ["codebook_sizes: expected a list of integers (or a comma-separated "
                                                                     "string), got [8, 2.5]"]
    assert RQKMeansConfig(codebook_sizes=[]).all_errors() == ["codebook_sizes must not be empty"]
    # a rule between settings stays in errors()
    with pytest.raises(ValueError, match="beam_size \\(20\\) must be >= the largest cut-off 50"):
        stage_config("retrieval", {"ks": [5, 50], "beam_size": 20})


def test_assign_config_replace_works_and_old_key_and_flag_still_do():
    from tokenizer_kit.pipeline import AssignConfig

    cfg = AssignConfig().replace(show=3, replace_changed=True)
    assert (cfg.show, cfg.replace_changed) == (3, True)
    assert AssignConfig.from_dict({"replace": True}).replace_changed is True
    with pytest.raises(ValueError, match="replace and replace_changed are the same setting"):
        AssignConfig.from_dict({"replace": True, "replace_changed": False})
    from tokenizer_kit.cli.app import _VERBS, app  # noqa: F401
    import typer.main

    cmd = typer.main.get_command(app).get_command(None, "assign")
    opt = [p for p in cmd.params if p.name == "replace_changed"][0]
    assert {"--replace-changed", "--replace"} <= set(opt.opts) and "--no-replace" in opt.secondary_opts


def test_one_name_per_concept_old_names_still_load():
    from tokenizer_kit._config import load_preset
    from tokenizer_kit.pipeline import stage_config
    from tokenizer_kit.quantizers import RQKMeansConfig

    assert stage_config("codebook", {"codebook_size": 8, "levels": 2}).sizes_per_level() == [8, 8]
    assert stage_config("codebook", {"codebook_sizes": "8,4", "levels": 2}).sizes_per_level() == [8, 4]
    # the shipped preset spells the old key: it still loads
    assert "codebook_size" in load_preset("codebook", "onerec-paper")
    assert stage_config("codebook", {}, preset="onerec-paper").sizes_per_level() == [8192] * 3
    with pytest.raises(ValueError, match=r"codebook_size: expected a list of integers"):
        stage_config("codebook", {"codebook_size": "abc"})
    # RQ-Kmeans's encoding batch has RQ-VAE's name; configs saved as batch_size still load
    assert RQKMeansConfig.from_dict({"batch_size": 7}).encode_batch_size == 7
    assert stage_config("codebook", {"batch_size": 7}).quantizer_config().encode_batch_size == 7
    assert stage_config("codebook", {"method": "rq-vae", "batch_size": 64}).quantizer_config().batch_size == 64


def test_help_shows_the_bounds():
    from tokenizer_kit.cli.app import app

    out = " ".join(CliRunner().invoke(app, ["build-codebook", "--help"], terminal_width=400).stdout.split())
    assert "Allowed: >= 1." in out and "--codebook-size" in out and "--codebook-sizes" in out
