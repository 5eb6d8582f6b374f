"""The pipeline end to end on a slice of Office: runs, skips, re-runs what changed.

The library runs the chain (``tokenizer_kit.pipeline.run``); the CLI verb only renders it.
"""

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from tokenizer_kit.cli.app import app
from tokenizer_kit.pipeline import run

runner = CliRunner()


def _config(d, codebook_size=8, extra=""):
    text = f"""
workdir = "work"
seed = 0
[data]
catalog = "s.item.json"
interactions = "s.inter.json"
[extract]
text_fields = "title,brand,categories"
max_tokens_per_field = 12
[align]
steps = 12
batch_size = 16
d_model = 32
n_layers = 1
n_heads = 2
caption_weight = 0.0
checkpoint_every = 5
[codebook]
levels = 2
codebook_size = "{codebook_size}"
balanced = true
[retrieval]
enabled = true
epochs = 1
d_model = 16
n_layers = 1
n_heads = 2
d_ff = 32
{extra}
"""
    (d / "p.toml").write_text(text)
    return d / "p.toml"


def _run(cfg):
    r = runner.invoke(app, ["pipeline", str(cfg), "--format", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _run_in_fresh_process(cfg):
    """``pipeline.run`` in a new interpreter: its summary, and whether typer / click got imported."""
    code = textwrap.dedent(f"""
        import json, sys
        from tokenizer_kit.pipeline import run
        summary = run({str(cfg)!r})
        print(json.dumps({{"summary": summary, "cli_modules": sorted(m for m in ("typer", "click") if m in sys.modules)}}))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_pipeline_runs_then_skips_then_reruns_changed(office_slice):
    cfg = _config(office_slice)
    res = _run_in_fresh_process(cfg)
    # the library ran the whole chain without the CLI's modules (rich is not checked: scikit-learn
    # imports it for its own progress bars)
    assert res["cli_modules"] == []
    first = res["summary"]
    st = {s["stage"]: s["status"] for s in first["stages"]}
    assert set(st) >= {"extract", "mine-pairs", "align", "embed", "embed-raw", "build-codebook[aligned]", "index[aligned]",
                       "build-codebook[raw]", "index[raw]", "report"}
    assert set(st.values()) == {"ran"}
    toks = first["tokenizers"]
    assert set(toks) == {"tokenizer", "tokenizer_raw"} and toks["tokenizer"]["n_items"] == 160
    rep = json.loads((office_slice / "work" / "report.json").read_text())
    assert [t["name"] for t in rep["tokenizers"]] == ["tokenizer", "tokenizer_raw"]
    assert rep["coclick_agreement"]["tokenizer"]["pairs"] > 0
    page = (office_slice / "work" / "report.html").read_text()
    # the HTML report: side by side, the alignment's and retrieval's numbers, a caveat (aligned vs raw spaces)
    assert "class=best" in page and "alignment: held-out evaluation" in page and "retrieval (aligned SIDs): test users" in page
    assert "different embedding spaces" in page and "recall_ratio" in page
    ev = first["alignment"]
    assert ev["n_pairs"] > 0 and ev["recall_ratio"] == pytest.approx(ev["recall_aligned"] / ev["recall_raw_pooled"])
    ret = first["retrieval"]["aligned"]["test"]
    assert 0.0 <= ret["recall@5"] <= ret["recall@10"] <= 1.0 and "ndcg@10" in ret

    # stage records go through the manifest module: versioned and sealed
    from tokenizer_kit.io import read_record
    from tokenizer_kit.pipeline._runner import STAGE_RECORD

    rec = read_record(office_slice / "work" / "stages" / "align.json", STAGE_RECORD)
    assert rec["stage"] == "align" and rec["config"]["steps"] == 12 and "package_version" in rec

    again = _run(cfg)  # the CLI verb: parses, calls run(), renders
    assert {s["status"] for s in again["stages"]} == {"skipped"}

    # a codebook change re-runs the codebook and everything after it, nothing before
    third = run(_config(office_slice, codebook_size=16))
    st = {s["stage"]: s["status"] for s in third["stages"]}
    assert st["extract"] == st["align"] == st["embed"] == "skipped"
    assert st["build-codebook[aligned]"] == st["index[aligned]"] == st["report"] == st["evaluate-retrieval[aligned]"] == "ran"
    assert third["tokenizers"]["tokenizer"]["entropy_normalized"] and len(third["tokenizers"]["tokenizer"]["entropy_normalized"]) == 2


def test_pipeline_config_errors_reported_at_once(office_slice):
    (office_slice / "bad.toml").write_text(
        'workdir = "w"\nbogus = 1\n[data]\ncatalog = "missing.json"\n[codebook]\nlevelz = 3\n'
    )
    r = runner.invoke(app, ["pipeline", str(office_slice / "bad.toml")])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    err = r.stderr
    for part in ("unknown top-level keys ['bogus']", "needs interactions", "missing.json does not exist", "unknown key 'levelz'"):
        assert part in err
    assert not (office_slice / "w").exists()


def test_pipeline_config_from_python_objects(office_slice, tmp_path):
    """A dict (or a PipelineConfig) is validated like a file, before anything is written."""
    from tokenizer_kit.pipeline import AlignStageConfig, PipelineConfig, load_config

    d = {"workdir": str(tmp_path / "w"), "data": {"catalog": str(office_slice / "s.item.json"), "interactions": str(office_slice / "nope.json")},
         "align": {"steps": 0, "n_heads": 3}, "codebook": {"levels": 2, "codebook_size": [8, 8, 8]}}
    with pytest.raises(ValueError) as e:
        run(d)
    msg = str(e.value)
    for part in ("nope.json does not exist", "[align] steps must be >= 1", "d_model (128) must be divisible by n_heads (3)",
                 "[codebook] codebook_sizes lists 3 sizes for 2 levels"):
        assert part in msg, part
    assert not (tmp_path / "w").exists()
    cfg = PipelineConfig(catalog=office_slice / "s.item.json", interactions=office_slice / "s.inter.json", workdir=tmp_path / "w",
                         align=AlignStageConfig(steps=-1))
    with pytest.raises(ValueError, match=r"\[align\] steps must be >= 1, got -1"):
        load_config(cfg)
