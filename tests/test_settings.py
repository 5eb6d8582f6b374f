"""One name, one default: every CLI option is a config field (same name, same default), the
config files use the same names, and errors name settings in the library and flags in the CLI."""

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from tokenizer_kit._config import coerce, list_presets, load_preset, settings_of
from tokenizer_kit.cli.app import _VERBS, app
from tokenizer_kit.cli._options import flag, with_flag_names

runner = CliRunner()

# options that are not settings: inputs and outputs (no default, or None), switches of what to
# write (default False), and how results are printed
_NOT_SETTINGS_OK = {"fmt", "verbose", "help", "preset", "config_file"}


def _commands():
    import typer.main

    group = typer.main.get_command(app)
    return {name: group.get_command(None, name) for name in _VERBS}


def test_every_option_is_a_config_field_with_its_default():
    checked = 0
    for verb, cmd in _commands().items():
        settings = getattr(cmd.callback, "settings", {})  # set by the options' decorator
        for p in cmd.params:
            if p.param_type_name != "option":
                continue
            long = [o for o in p.opts if o.startswith("--")][0]
            if p.name in settings:
                s = settings[p.name]
                assert long == flag(s.name), (verb, long)
                default = p.default if p.default in (None, "") and s.default in (None, ()) else coerce(p.default, s.type, s.name)
                want = list(s.default) if isinstance(s.default, tuple) and isinstance(default, list) else s.default
                if default == "" and s.default == ():
                    default = ()
                assert default == want, (verb, long, p.default, s.default)
                checked += 1
            else:
                # not a setting: it must not carry a default of its own
                assert p.name in _NOT_SETTINGS_OK or p.default in (None, False) or p.required, (verb, long, p.default)
    assert checked > 100


def test_renamed_settings_have_one_name_everywhere():
    cmds = _commands()
    opts = {v: {o for p in c.params for o in getattr(p, "opts", [])} for v, c in cmds.items()}
    assert {"--n-layers", "--n-heads", "--n-queries", "--d-model"} <= opts["align"]
    assert {"--n-layers", "--n-heads", "--d-model", "--cpu-threads"} <= opts["evaluate-retrieval"]
    assert {"--swing-topk", "--u2i-targets"} <= opts["mine-pairs"]
    assert {"--max-epochs", "--codebook-size", "--levels"} <= opts["build-codebook"]
    for gone in ("--layers", "--heads", "--queries", "--topk", "--epochs", "--threads", "--no-caption"):
        assert all(gone not in o for v, o in opts.items() if v != "evaluate-retrieval" or gone != "--epochs"), gone


def test_defaults_are_the_best_measured():
    from tokenizer_kit.alignment import AlignConfig, PairMiningConfig

    a = AlignConfig()
    assert (a.qformer.d_model, a.qformer.n_layers, a.steps, a.lr, a.qformer.pooled_query_init, a.max_tokens) == (128, 2, 3000, 3e-3, True, 32)
    assert PairMiningConfig().u2i_targets == 40


def test_library_names_settings_cli_names_flags():
    msg = "too few items; set `codebook_sizes` to 16 or fewer; lower max_tokens"
    flags = {"codebook_size": "--codebook-size", "codebook_sizes": "--codebook-size", "max_tokens": "--max-tokens", "steps": "--steps"}
    assert with_flag_names(msg, flags) == "too few items; set --codebook-size to 16 or fewer; lower --max-tokens"
    # a plain word is a setting only where the error says so
    assert with_flag_names("steps must be >= 1, got -5; more steps", flags) == "steps must be >= 1, got -5; more steps"
    assert with_flag_names("steps must be >= 1, got -5", flags, ["steps"]) == "--steps must be >= 1, got -5"


def test_config_errors_all_at_once_with_types():
    from tokenizer_kit.pipeline import stage_config

    with pytest.raises(ValueError) as e:
        stage_config("align", {"steps": -5, "n_layers": "two", "lr": True, "topk": 3})
    msg = str(e.value)
    for part in ("steps must be >= 1, got -5", "n_layers: expected an integer, got 'two'", "lr: expected a number, got True", "unknown keys ['topk']"):
        assert part in msg, part
    with pytest.raises(ValueError, match="u2i_targets_per_user is now called u2i_targets"):
        stage_config("mine_pairs", {"u2i_targets_per_user": 3})
    # a config with former names is told the current ones
    with pytest.raises(ValueError, match=r"layers is now called n_layers; unknown keys \['topk'\]"):
        stage_config("align", {"layers": 2, "topk": 1})
    with pytest.raises(ValueError, match="epochs is now called max_epochs"):
        stage_config("codebook", {"method": "rq-vae", "epochs": 3})


def test_presets_listed_and_layered():
    from tokenizer_kit.pipeline import stage_config

    assert {"align/no-caption", "align/onerec-paper", "codebook/onerec-paper"} <= set(list_presets())
    assert load_preset("align", "no-caption")["caption_weight"] == 0.0
    cfg = stage_config("align", {"steps": 10}, preset="no-caption")
    assert cfg.caption_weight == 0.0 and cfg.steps == 10 and cfg.qformer.n_heads == 4
    # a setting given on top of the preset wins
    assert stage_config("align", {"caption_weight": 0.5}, preset="no-caption").caption_weight == 0.5
    with pytest.raises(ValueError, match="no preset 'nope' for align; available: \\[.*'no-caption', .*'onerec-paper'\\]"):
        stage_config("align", {}, preset="nope")
    r = runner.invoke(app, ["presets", "--format", "json"])
    assert r.exit_code == 0 and {(p["stage"], p["preset"]) for p in json.loads(r.stdout)} >= {("align", "no-caption")}


def test_every_setting_has_help():
    from tokenizer_kit.pipeline import STAGES

    for stage, (cls, _) in STAGES.items():
        for s in cls.cli_settings():
            assert s.help, (stage, s.name)


_BAD = """
workdir = "w"
[data]
catalog = "s.item.json"
interactions = "s.inter.json"
[align]
steps = -5
[codebook]
codebook_size = "abc"
"""


def test_validate_rejects_bad_values_in_one_run(office_slice):
    (office_slice / "bad.toml").write_text(_BAD)
    r = runner.invoke(app, ["validate", str(office_slice / "bad.toml")])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "[align] steps must be >= 1, got -5" in err
    assert "[codebook] codebook_size: expected a list of integers (or a comma-separated string), got 'abc'" in err
    assert not (office_slice / "w").exists()
    good = _BAD.replace("steps = -5", "steps = 5").replace('"abc"', "8")
    (office_slice / "good.toml").write_text(good)
    r = runner.invoke(app, ["validate", str(office_slice / "good.toml"), "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["valid"] and out["align_steps"] == 5 and out["codebook"] == "rq-kmeans 8x8x8"
    assert not (office_slice / "w").exists()


def test_cli_threads_reach_the_retriever(tmp_path):
    """--cpu-threads is RetrievalConfig.cpu_threads, the setting training and decoding run under."""
    from tokenizer_kit.pipeline import stage_config

    assert stage_config("retrieval", {"cpu_threads": 2}).cpu_threads == 2
    cmd = _commands()["evaluate-retrieval"]
    opt = [p for p in cmd.params if p.name == "cpu_threads"][0]
    assert opt.opts == ["--cpu-threads"] and opt.default == 1


def test_library_and_pipeline_import_without_typer_or_rich():
    code = textwrap.dedent("""
        import sys
        import tokenizer_kit, tokenizer_kit.pipeline
        from tokenizer_kit.pipeline import run, load_config, stages, STAGES
        print(sorted(m for m in ("typer", "rich", "click") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_quick_verbs_do_not_import_torch():
    code = "import sys\nfrom typer.testing import CliRunner\nfrom tokenizer_kit.cli.app import app\n" \
           "r = CliRunner().invoke(app, ['lookup', '--help'])\nassert r.exit_code == 0, r.output\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_demo_configs_fast_and_long():
    """configs/office.toml (make demo) and configs/office_long.toml (make demo-long, presets
    office-long) load; the long one is the previous demo's alignment and companion training."""
    from pathlib import Path

    from tokenizer_kit.pipeline import load_config

    root = Path(__file__).resolve().parents[1]
    fast, long = load_config(root / "configs" / "office.toml"), load_config(root / "configs" / "office_long.toml")
    assert (fast.align.qformer.d_model, fast.align.steps, fast.align.caption_max_tokens, fast.align.cpu_threads) == (64, 1500, 16, 1)
    assert (long.align.qformer.d_model, long.align.steps, long.align.caption_every, long.align.caption_max_tokens) == (128, 3000, 10, 32)
    assert (fast.retrieval.epochs, fast.retrieval.max_history) == (2, 10)
    assert (long.retrieval.epochs, long.retrieval.max_history) == (3, 20)
    assert fast.extract.bf16 and long.extract.bf16 and fast.mine_pairs.u2i_history == long.mine_pairs.u2i_history == 5
    assert long.workdir != fast.workdir


def test_settings_of_flattens_nested_configs():
    from tokenizer_kit.alignment import AlignConfig

    names = [s.name for s in settings_of(AlignConfig)]
    assert "d_model" in names and "qformer" not in names and len(names) == len(set(names))
    cfg = AlignConfig.from_dict({"d_model": 64, "qformer": {"n_layers": 3}, "steps": 7})
    assert (cfg.qformer.d_model, cfg.qformer.n_layers, cfg.steps) == (64, 3, 7)
