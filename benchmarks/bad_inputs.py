"""Run the bad-input corpus (tests/_bad_inputs.py) against whichever tokenizer_kit is on the
path and write the counts: clean / traceback / accepted / state changed / unclear.

    PYTHONPATH=/path/to/checkout python benchmarks/bad_inputs.py --label before \
        --out benchmarks/results/bad_inputs_before.json

The corpus comes from this file's repository; the code under test from PYTHONPATH, so the
same cases can be run on an older checkout of main.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _corpus():
    spec = importlib.util.spec_from_file_location("_bad_inputs", HERE.parent / "tests" / "_bad_inputs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_bad_inputs"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import tokenizer_kit
    from tokenizer_kit.cli.app import app

    from _machine import machine_info

    corpus = _corpus()
    invoke = corpus.cli_invoker(app)
    root = Path(tempfile.mkdtemp(prefix="bad-inputs-")).resolve()
    t0 = time.perf_counter()
    try:
        ws, pristine = root / "ws", root / "pristine"
        corpus.build_workspace(ws, invoke)
        shutil.copytree(ws, pristine, symlinks=True)
        build_s = time.perf_counter() - t0
        results = []
        for case in corpus.CASES:
            t = time.perf_counter()
            verdict, msg = corpus.run_case(case, ws, pristine, invoke)
            msg = msg.replace(str(root), "<tmp>")  # the results name no path of this machine
            results.append({"id": case.id, "verdict": verdict, "message": msg, "seconds": round(time.perf_counter() - t, 3)})
            print(f"{verdict:14s} {case.id}: {msg[:160]}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    counts = collections.Counter(r["verdict"] for r in results)
    verbs = collections.defaultdict(collections.Counter)
    for r in results:
        verbs[r["id"].split("/")[0]][r["verdict"]] += 1
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(tokenizer_kit.__file__).parent, capture_output=True, text=True).stdout.strip()
    tested = Path(tokenizer_kit.__file__).resolve().parent.parent
    out = {
        "label": args.label,
        "code_under_test": {"path": "." if tested == HERE.parent else "<checkout>", "commit": commit},
        "cases": len(results),
        "counts": {k: counts.get(k, 0) for k in ("clean", "traceback", "accepted", "state changed", "unclear")},
        "per_verb": {v: dict(c) for v, c in sorted(verbs.items())},
        "workspace_seconds": round(build_s, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "results": results,
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["counts"]), f"{len(results)} cases in {out['seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
