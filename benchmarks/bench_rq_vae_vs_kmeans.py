"""Table-11 style comparison: RQ-Kmeans vs RQ-VAE on the same embeddings.

For each setting it runs the real CLI (``build-codebook --method rq-kmeans`` and
``--method rq-vae``, then ``report A B --format json``) and adds a held-out check through
the Python API (fit on 90% of the items, reconstruct the other 10%), because the report
measures reconstruction on the items the codebooks were fit on.

Settings:
  office  Office MiniLM embeddings (2420 x 384), 3 x 256 (the issue's setting)
  large   a seeded synthetic 50000 x 256 hierarchical mixture (unit-norm rows, like sentence
          embeddings), 3 x 1024: the largest setting whose RQ-VAE training fits a few CPU
          minutes here; there is no larger real catalogue on this machine, and embedding one
          with MiniLM on 2 busy cores would cost more than the comparison itself.

    python benchmarks/bench_rq_vae_vs_kmeans.py --out benchmarks/results/rq_vae_vs_kmeans.json

Writes one JSON with the machine, the commands, every build's output and report, and a
compact table; prints the table as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine_info as machine  # benchmarks/ is on sys.path when run as a script

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "tokenizer_kit.cli.app", *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p), HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr}")
    return json.loads(res.stdout), wall


def synthetic(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Three-level hierarchical Gaussian mixture (64 x 16 x 8 leaves), anisotropic, unit norm."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0] * np.linspace(1.5, 0.2, d)[None, :]
    c1 = rng.standard_normal((64, d))
    c2 = 0.5 * rng.standard_normal((64, 16, d))
    c3 = 0.25 * rng.standard_normal((64, 16, 8, d))
    a, b, c = rng.integers(0, 64, n), rng.integers(0, 16, n), rng.integers(0, 8, n)
    x = (c1[a] + c2[a, b] + c3[a, b, c] + 0.15 * rng.standard_normal((n, d))) @ basis
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def held_out(x: np.ndarray, sizes: list[int], vae_cfg: dict, seed: int = 1234) -> dict:
    """Reconstruction MSE on 10% of the items left out of fitting."""
    from tokenizer_kit.quantizers import RQVAE, RQKMeans

    perm = np.random.default_rng(seed).permutation(len(x))
    te, tr = np.sort(perm[: len(x) // 10]), np.sort(perm[len(x) // 10 :])
    out = {"n_fit": int(len(tr)), "n_held_out": int(len(te))}
    for name, q in (
        ("rq-kmeans", RQKMeans(codebook_sizes=sizes, seed=seed)),
        ("rq-kmeans-balanced", RQKMeans(codebook_sizes=sizes, seed=seed, balanced=True)),
        ("rq-vae", RQVAE(codebook_sizes=sizes, seed=seed, **vae_cfg)),
    ):
        t0 = time.perf_counter()
        q.fit(x[tr])
        fit_s = time.perf_counter() - t0
        mse = lambda rows: float(((x[rows] - q.decode(q.encode(x[rows]))) ** 2).mean())  # noqa: E731
        out[name] = {"fit_mse": mse(tr), "held_out_mse": mse(te), "fit_seconds": fit_s}
    return out


def compact(rep: dict, build: dict, wall: float) -> dict:
    lv = rep["levels"]
    return {
        "reconstruction_mse": rep["reconstruction_mse"],
        "reconstruction_relative": rep["reconstruction_relative"],
        "utilization": [l["utilization"] for l in lv],
        "entropy_nats": [l["entropy_nats"] for l in lv],
        "entropy_normalized": [l["entropy_normalized"] for l in lv],
        "collision_rate": rep["collision_rate"],
        "largest_bucket": rep["largest_bucket"],
        "build_seconds": build["build_seconds"],
        "cli_wall_seconds": wall,
    }


def run_setting(name: str, emb: Path, ids: Path | None, sizes: list[int], vae_cfg: dict, work: Path, x: np.ndarray) -> dict:
    from tokenizer_kit.build._artifact import TOKENIZER

    cfg_path = work / f"{name}_rqvae.json"
    cfg_path.write_text(json.dumps(vae_cfg))
    size_arg = ",".join(map(str, sizes))
    common = [str(emb), "--levels", str(len(sizes)), "--codebook-size", size_arg, "--seed", "1234", "--format", "json", "--overwrite"]
    if ids is not None:
        common += ["--ids", str(ids)]
    runs = {}
    commands = {}
    variants = (
        ("rq-kmeans", "rq-kmeans", []),
        ("rq-kmeans-balanced", "rq-kmeans", ["--balanced"]),
        ("rq-vae", "rq-vae", ["--config", str(cfg_path)]),
    )
    for label, method, extra in variants:
        out = work / f"{name}_{label}"
        args = ["build-codebook", *common, "--out", str(out), "--method", method, *extra]
        commands[label] = "tokenizer-kit " + " ".join(args)
        build, wall = cli(*args)
        runs[label] = {"build": build["tokenizers"][0], "wall_seconds": wall, "path": out}
        print(f"[{name}] {label}: built in {wall:.1f}s", file=sys.stderr)
    rep_args = ["report", *[str(r["path"]) for r in runs.values()], "--format", "json"]
    commands["report"] = "tokenizer-kit " + " ".join(rep_args)
    report, _ = cli(*rep_args)
    by_name = {r["name"]: r for r in report["tokenizers"]}
    table = {m: compact(by_name[runs[m]["path"].name], runs[m]["build"], runs[m]["wall_seconds"]) for m in runs}
    manifest = json.loads(TOKENIZER.manifest_path(runs["rq-vae"]["path"]).read_text())
    ho = held_out(x, sizes, vae_cfg)
    print(f"[{name}] held-out: {json.dumps({k: v for k, v in ho.items() if k.startswith('rq')})}", file=sys.stderr)
    return {
        "setting": name,
        "n": int(x.shape[0]),
        "d": int(x.shape[1]),
        "codebook_sizes": sizes,
        "rq_vae_config": vae_cfg,
        "commands": commands,
        "table": table,
        "held_out": ho,
        "rq_vae_training": {k: v for k, v in manifest["training"].items() if k != "history"},
        "report": report,
    }


def markdown(results: list[dict]) -> str:
    lines = [
        "| setting | method | recon MSE (rel.) | held-out MSE | utilization per level | entropy nats per level (/ ln K) | collisions | build s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for m, t in r["table"].items():
            util = " / ".join(f"{u:.4f}" for u in t["utilization"])
            ent = " / ".join(f"{e:.3f}" for e in t["entropy_nats"]) + " (" + " / ".join(f"{e:.2f}" for e in t["entropy_normalized"]) + ")"
            ho = r["held_out"][m]["held_out_mse"]
            lines.append(
                f"| {r['setting']} {r['n']}x{r['d']}, {len(r['codebook_sizes'])}x{r['codebook_sizes'][0]} | {m} | "
                f"{t['reconstruction_mse']:.3g} ({t['reconstruction_relative']:.3f}) | {ho:.3g} | {util} | {ent} | "
                f"{t['collision_rate']:.3f} | {t['build_seconds']:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--office", type=Path, default=ROOT / "tests" / "data" / "office_minilm_f16.npy")
    ap.add_argument("--office-ids", type=Path, default=ROOT / "tests" / "data" / "office_minilm_f16.ids.txt")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rq_vae_vs_kmeans.json")
    ap.add_argument("--large-n", type=int, default=50000)
    ap.add_argument("--large-d", type=int, default=256)
    ap.add_argument("--large-k", type=int, default=1024)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--office-epochs", type=int, default=100)
    ap.add_argument("--large-epochs", type=int, default=30)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))

    result = {"benchmark": "rq_vae_vs_kmeans", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(), "settings": []}
    base = {"cpu_threads": 1}
    with tempfile.TemporaryDirectory(prefix="rqvae_bench_") as tmp:
        work = Path(tmp)
        x = np.load(args.office).astype(np.float32)
        result["settings"].append(
            run_setting("office", args.office, args.office_ids, [256] * 3, {**base, "max_epochs": args.office_epochs, "batch_size": 256}, work, x)
        )
        if not args.skip_large:
            xl = synthetic(args.large_n, args.large_d)
            np.save(work / "large.npy", xl)
            vae = {**base, "max_epochs": args.large_epochs, "batch_size": 1024, "patience": 5}
            result["settings"].append(run_setting("synthetic", work / "large.npy", None, [args.large_k] * 3, vae, work, xl))
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["markdown"] = markdown(result["settings"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(result["markdown"])


if __name__ == "__main__":
    main()
