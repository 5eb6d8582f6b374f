"""The layers of ``tokenizer_kit``, and the route a command takes down them.

``LAYERS`` lists the parts of the package from the bottom up. A part may use its own layer
and the layers below it, never one above:

* statically, every import (at module level or inside a function) goes down or sideways;
* dynamically, following ``assign`` (with an index, known and new items) and ``extract`` from
  the CLI, every call from a function of one part into a function of another goes down or
  sideways. A call up is a return: an engine calling a closure of the pipeline, a domain
  calling back into an engine. Batch functions handed to an engine belong to the domain.
  The mechanisms of the two lowest layers (settings, manifests, atomic writes) call hooks
  that the parts above declare on them (a config's ``errors()``, an artifact's loader):
  that is dispatch, not a return, and is not counted.

``python tests/test_layers.py assign`` (or ``extract``; ``--ray`` for the ray engine's
driver) prints the route: each first call from one part into another, in the order the
command makes them.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

PKG = "tokenizer_kit"
LAYERS: list[set[str]] = [
    {PKG, "errors", "_version", "_config", "_progress", "_exports", "_torch_utils"},  # infrastructure and the facade
    {"io"},  # files: atomic writes, manifests, locks, readers
    {"quantizers", "features", "alignment"},  # the domains that need no tokenizer
    {"build"},  # the tokenizer, its build (in memory and streamed) and metrics
    {"evaluation", "indexer"},  # what is computed on a built tokenizer
    {"generative", "companion"},  # SIDs into language models
    {"engines"},  # where a batch function runs (local or Ray), and the parts collected
    {"pipeline"},  # stages and their bookkeeping
    {"cli"},  # the terminal
]
LAYER = {part: k for k, parts in enumerate(LAYERS) for part in parts}
MECHANISMS = LAYERS[0] | LAYERS[1]  # their calls up are hooks declared on them


def part_of(module: str) -> str | None:
    """``tokenizer_kit.io._atomic`` -> ``io``; ``tokenizer_kit`` -> ``tokenizer_kit``; None outside."""
    if module != PKG and not module.startswith(PKG + "."):
        return None
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else PKG


# ---- static ------------------------------------------------------------------------------------------
def test_every_part_has_a_layer():
    import tokenizer_kit

    root = Path(tokenizer_kit.__file__).parent
    parts = {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    parts |= {p.stem for p in root.glob("*.py") if p.stem != "__init__"} | {PKG}
    assert parts - {"presets"} <= set(LAYER), f"parts without a layer: {sorted(parts - set(LAYER) - {'presets'})}"
    assert set(LAYER) <= parts, f"layers name parts that do not exist: {sorted(set(LAYER) - parts)}"


def test_imports_go_down():
    sys.path.insert(0, str(Path(__file__).parent))
    import tokenizer_kit
    from test_import_graph import import_graph

    up = [f"{src} ({LAYER[src]}) imports {dst} ({LAYER[dst]}) at {where[0]}"
          for src, dsts in import_graph(Path(tokenizer_kit.__file__).parent).items()
          for dst, where in dsts.items() if LAYER[dst] > LAYER[src]]
    assert not up, "imports that go up a layer:\n" + "\n".join(up)


# ---- dynamic -----------------------------------------------------------------------------------------
class CallRoute:
    """Every call between two parts of the package while active (all threads): caller and
    callee as ``module:function``, in order of first occurrence."""

    def __init__(self) -> None:
        self.edges: dict[tuple[str, str], tuple[str, str]] = {}

    def _hook(self, frame, event, arg):
        if event != "call" or frame.f_back is None:
            return
        callee = frame.f_globals.get("__name__", "")
        caller = frame.f_back.f_globals.get("__name__", "")
        a, b = part_of(caller), part_of(callee)
        if a is None or b is None or a == b:
            return
        key = (f"{caller}:{frame.f_back.f_code.co_qualname}", f"{callee}:{frame.f_code.co_qualname}")
        self.edges.setdefault(key, (a, b))

    def __enter__(self):
        threading.setprofile(self._hook)
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)
        threading.setprofile(None)

    def upward(self) -> list[str]:
        return [f"{c} ({a}, layer {LAYER[a]}) -> {d} ({b}, layer {LAYER[b]})"
                for (c, d), (a, b) in self.edges.items() if LAYER[b] > LAYER[a] and a not in MECHANISMS]

    def lines(self) -> list[str]:
        return [f"{a:>12} -> {b:<12} {c}  ->  {d}" for (c, d), (a, b) in self.edges.items()]


def _cli(*args: str) -> str:
    from typer.testing import CliRunner

    from tokenizer_kit.cli.app import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.stdout


def _assign_inputs(d: Path) -> tuple[Path, Path]:
    """A tokenizer (suffix index) on 600 generated items, and 800 rows to assign: the 600 known, 200 new."""
    from tokenizer_kit.io import make_clustered_embeddings

    x = np.asarray(make_clustered_embeddings(800, 16, n_topics=8, n_sub=4, seed=1), np.float32)
    ids = [f"it{i}" for i in range(len(x))]

    def table(rows):
        return pa.table({"item_id": [ids[i] for i in rows], "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x[rows].ravel()), 16)})

    pq.write_table(table(range(600)), d / "known.parquet")
    pq.write_table(table(range(800)), d / "all.parquet")
    _cli("build-codebook", d / "known.parquet", "--out", d / "tok", "--codebook-size", "8", "--levels", "2", "--seed", "0")
    return d / "tok", d / "all.parquet"


RAY = ("--engine", "ray", "--workers", "1")  # the driver's side of the route (the workers run the same batch functions)


def _route_assign(d: Path, *engine: str) -> CallRoute:
    tok, src = _assign_inputs(d)
    out = d / ("sids" if engine else "sids.parquet")  # the ray engine writes a shard directory
    with CallRoute() as route:
        _cli("assign", src, "--tokenizer", tok, "--out", out, *engine)
    return route


def _route_extract(d: Path, *engine: str) -> CallRoute:
    pq.write_table(pa.table({"item_id": [f"i{k}" for k in range(12)], "title": [f"blue office stapler model {k}" for k in range(12)]}),
                   d / "catalog.parquet")
    with CallRoute() as route:
        _cli("extract", d / "catalog.parquet", "--out", d / "features", "--text-fields", "title", "--format", "json", *engine)
    return route


ROUTES = {"assign": _route_assign, "extract": _route_extract}


@pytest.mark.parametrize("engine", ["local", "ray"])
@pytest.mark.parametrize("command", sorted(ROUTES))
def test_route_goes_down_without_returning(command, engine, tmp_path):
    if engine == "ray":
        ray = pytest.importorskip("ray")
        started = not ray.is_initialized()
    try:
        route = ROUTES[command](tmp_path, *(RAY if engine == "ray" else ()))
    finally:
        if engine == "ray" and started:
            ray.shutdown()  # the local cluster the CLI started: other tests start their own
    parts = {b for a, b in route.edges.values()}
    assert "cli" in {a for a, _ in route.edges.values()} and len(parts) >= 3, route.lines()  # the hook saw the route
    up = route.upward()
    assert not up, f"{command}: calls that return up a layer:\n" + "\n".join(up)


def test_the_check_sees_a_call_that_returns():
    """A planted upward call is reported: a pipeline-level function called from an engine frame."""
    route = CallRoute()
    route.edges[("tokenizer_kit.engines._run:run", "tokenizer_kit.pipeline._stages:closure")] = ("engines", "pipeline")
    route.edges[("tokenizer_kit.cli._assign:assign", "tokenizer_kit.pipeline._stages:assign")] = ("cli", "pipeline")
    route.edges[("tokenizer_kit._config:ValidatedConfig.all_errors", "tokenizer_kit.pipeline._verb_configs:AssignConfig.errors")] = ("_config", "pipeline")
    assert route.upward() == ["tokenizer_kit.engines._run:run (engines, layer 6) -> tokenizer_kit.pipeline._stages:closure (pipeline, layer 7)"]


if __name__ == "__main__":  # python tests/test_layers.py assign|extract: print the route
    import tempfile

    args = [a for a in sys.argv[1:] if a != "--ray"]
    cmd = args[0] if args else "assign"
    with tempfile.TemporaryDirectory() as tmp:
        r = ROUTES[cmd](Path(tmp), *(RAY if "--ray" in sys.argv else ()))
    print("\n".join(r.lines()))
    print(json.dumps({"calls_between_parts": len(r.edges), "upward": r.upward()}, indent=1))
