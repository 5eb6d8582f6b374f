"""`make demo` timed stage by stage: wall and process-CPU seconds of each pipeline stage.

Runs ``tokenizer_kit.pipeline.run`` on a pipeline config (default configs/office.toml) in a
fresh work directory (``--workdir``, emptied first unless ``--keep``), in process, and records
per stage the wall and CPU seconds, the load average at its start and end, and the results
the demo reports (alignment held-out recall and caption control, retrieval metrics). The
interpreter's start and imports are timed too, so ``total_wall_s`` is what ``make demo``
costs on a fresh clone (the venv set up).

    python benchmarks/demo_timing.py --workdir benchmarks/.scratch/demo_t --out benchmarks/results/demo_office_fast_s0.json
    python benchmarks/demo_timing.py --config configs/office_long.toml --workdir benchmarks/.scratch/demo_long --out ...

``--set align.seed=1`` (repeatable) changes one setting of a stage table (TOML value syntax).
CPU seconds are less sensitive to other jobs than wall seconds: on a busy machine compare CPU.
"""

from __future__ import annotations

import time

T_START_WALL, T_START_CPU = time.perf_counter(), time.process_time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "office.toml"))
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the workdir (stages already done are skipped)")
    ap.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import tokenizer_kit.pipeline as pipeline
    from _machine import machine_info
    from _paths import portable

    t_import = (time.perf_counter() - T_START_WALL, time.process_time() - T_START_CPU)
    cfg_path = Path(args.config).resolve()
    raw = tomllib.loads(cfg_path.read_text())
    for spec in args.set:
        key, _, val = spec.partition("=")
        table, _, name = key.partition(".")
        raw.setdefault(table, {})[name] = tomllib.loads(f"v = {val}")["v"]
    raw["workdir"] = str(Path(args.workdir).resolve())
    wd = Path(raw["workdir"])
    if wd.exists() and not args.keep:
        shutil.rmtree(wd)
    stages: list[dict] = []
    open_: dict[str, tuple[float, float, float]] = {}

    def on_stage(name, outcome):
        if outcome is None:
            open_[name] = (time.perf_counter(), time.process_time(), os.getloadavg()[0])
            return
        w0, c0, l0 = open_.pop(name)
        stages.append({"stage": name, "status": outcome.status, "wall_s": round(time.perf_counter() - w0, 1),
                       "cpu_s": round(time.process_time() - c0, 1), "load_start": round(l0, 2), "load_end": round(os.getloadavg()[0], 2)})
        print(json.dumps(stages[-1]), flush=True)

    load0 = os.getloadavg()
    summary = pipeline.run(_with_base(raw, cfg_path.parent), on_stage=on_stage)
    total = (time.perf_counter() - T_START_WALL, time.process_time() - T_START_CPU)
    retrieval = {n: {"test": r.get("test"), "seconds": r.get("seconds"), "config": r.get("config")} for n, r in (summary.get("retrieval") or {}).items()}
    res = {
        "benchmark": "demo_timing",
        "command": portable("python " + " ".join(sys.argv)),
        "config": str(cfg_path.relative_to(ROOT)) if cfg_path.is_relative_to(ROOT) else str(cfg_path),
        "settings_changed": args.set,
        "note": args.note,
        "machine": machine_info(),
        "load_before": load0,
        "load_after": os.getloadavg(),
        "python_start_and_imports": {"wall_s": round(t_import[0], 1), "cpu_s": round(t_import[1], 1)},
        "stages": stages,
        "total_wall_s": round(total[0], 1),
        "total_cpu_s": round(total[1], 1),
        "alignment": summary.get("alignment"),
        "retrieval": retrieval,
        "tokenizers": summary.get("tokenizers"),
        "coclick_agreement": summary.get("coclick_agreement"),
    }
    Path(args.out).write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(json.dumps({"total_wall_s": res["total_wall_s"], "total_cpu_s": res["total_cpu_s"], "recall_ratio": (res["alignment"] or {}).get("recall_ratio")}))


def _with_base(raw: dict, base: Path) -> dict:
    """Relative data paths of the config resolve against its own directory."""
    raw = dict(raw)
    data = dict(raw.get("data", {}))
    for k in ("catalog", "interactions"):
        if k in data and not Path(data[k]).is_absolute():
            data[k] = str((base / data[k]).resolve())
    raw["data"] = data
    return raw


if __name__ == "__main__":
    main()
