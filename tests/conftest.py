import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
OFFICE = ROOT / "data" / "amazon-office"  # bundled in the repository (data/amazon-office/README.md)
DATA = Path(__file__).parent / "data"


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        cuda = False
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def office_dir() -> Path:
    # bundled with the repository: a missing file is a broken checkout, not a reason to skip
    assert (OFFICE / "Office.item.json").exists(), f"bundled Office data missing at {OFFICE}"
    return OFFICE


@pytest.fixture(scope="session")
def office_emb():
    """Office items embedded with all-MiniLM-L6-v2 (mean-pooled, normalised), stored as fp16.

    Made by `python benchmarks/make_office_embeddings.py`;
    a slow test checks a fresh embedding of some items matches it.
    """
    x = np.load(DATA / "office_minilm_f16.npy").astype(np.float32)
    ids = np.array((DATA / "office_minilm_f16.ids.txt").read_text().split(), dtype=object)
    return ids, x


@pytest.fixture(scope="session")
def clustered():
    from tokenizer_kit.io import make_clustered_embeddings

    return make_clustered_embeddings(3000, 32, n_topics=16, n_sub=8, seed=3)


@pytest.fixture(scope="session")
def office_slice(office_dir, tmp_path_factory):
    """Office items with id < 160 and the users with >= 4 of them: a pipeline in seconds."""
    d = tmp_path_factory.mktemp("slice")
    items = json.loads((office_dir / "Office.item.json").read_text())
    keep = {k for k in items if int(k) < 160}
    (d / "s.item.json").write_text(json.dumps({k: items[k] for k in sorted(keep, key=int)}))
    inter = json.loads((office_dir / "Office.inter.json").read_text())
    small = {u: [i for i in seq if str(i) in keep] for u, seq in inter.items()}
    small = {u: s for u, s in small.items() if len(s) >= 4}
    (d / "s.inter.json").write_text(json.dumps(small))
    return d


@pytest.fixture(autouse=True)
def _cli_logging_reset():
    """A CLI run in this process sets up tokenizer-kit's log handler and level (and silences
    third-party bars); undo that after each test so the next one starts as a library user."""
    yield
    import logging
    import sys

    root = logging.getLogger("tokenizer_kit")
    for h in [h for h in root.handlers if getattr(h, "_tokenizer_kit", False)]:
        root.removeHandler(h)
    root.setLevel(logging.NOTSET)
    logging.getLogger("tokenizer_kit.progress").setLevel(logging.NOTSET)
    common = sys.modules.get("tokenizer_kit.cli._common")
    if common is not None:
        common._state.update(quiet=False, verbose=False)
