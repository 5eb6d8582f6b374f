"""Every bad input in the corpus (tests/_bad_inputs.py, 316 cases across all verbs) fails
cleanly: non-zero exit, no traceback, one error line that names the problem, and every file
of the workspace byte-identical afterwards."""

from __future__ import annotations

import shutil

import pytest

from _bad_inputs import CASES, build_workspace, cli_invoker, run_case


@pytest.fixture(scope="module")
def corpus_env(tmp_path_factory):
    from tokenizer_kit.cli.app import app

    invoke = cli_invoker(app)
    root = tmp_path_factory.mktemp("bad-inputs")
    ws, pristine = root / "ws", root / "pristine"
    build_workspace(ws, invoke)
    shutil.copytree(ws, pristine, symlinks=True)
    return ws, pristine, invoke


def test_corpus_is_large_and_covers_every_verb():
    from tokenizer_kit.cli.app import _VERBS

    covered = {c.argv[0] for c in CASES}
    assert len(CASES) >= 150 and len({c.id for c in CASES}) == len(CASES)
    assert set(_VERBS) <= covered, sorted(set(_VERBS) - covered)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly(case, corpus_env):
    ws, pristine, invoke = corpus_env
    verdict, msg = run_case(case, ws, pristine, invoke)
    assert verdict == "clean", f"{verdict}: {msg}"
