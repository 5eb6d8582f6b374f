"""Throughput of `extract`: MiniLM (hf) on the Office catalogue, and open_clip ViT-B-32
(random init: no weights ship offline) on synthetic covers + frames.

    HF_HUB_OFFLINE=1 python benchmarks/bench_extract.py   # --data defaults to data/amazon-office
    HF_HUB_OFFLINE=1 python benchmarks/bench_extract.py --skip-hf --clip-items 512 --device cuda   # on a GPU

Writes benchmarks/results/extract-<host>-<time>.json (machine description included).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine_info as machine  # benchmarks/ is on sys.path when run as a script
from _paths import OFFICE, portable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench_hf(data: Path, fields, limit: int | None, batch_size: int, device: str) -> dict:
    from tokenizer_kit.features import ExtractConfig, FeatureStore, extract_features
    from tokenizer_kit.io import read_catalog

    table = read_catalog(data / "Office.item.json")
    if limit:
        table = table.slice(0, limit)
    cfg = ExtractConfig(backend="hf", text_fields=tuple(fields), max_tokens_per_field=64, batch_size=batch_size, device=device)
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), time.process_time()
        res = extract_features(table, Path(d) / "store", cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        st = FeatureStore.open(Path(d) / "store")
        size = sum(f.stat().st_size for f in (Path(d) / "store").rglob("*") if f.is_file())
        lens = st.lengths()
    return {
        "what": "hf all-MiniLM-L6-v2, Office catalogue",
        "fields": list(fields),
        "max_tokens_per_field": 64,
        "batch_size": batch_size,
        "device": device,
        "n_items": res.n_items,
        "n_tokens": res.n_tokens,
        "tokens_per_item_mean": float(lens.mean()),
        "tokens_per_item_max": int(lens.max()),
        "store_mib": size / 2**20,
        "encode_seconds": res.seconds,
        "wall_seconds_incl_model_load": wall,
        "cpu_seconds_incl_model_load": cpu,
        "items_per_cpu_s": res.n_items / cpu,
        "items_per_s": res.items_per_s,
        "tokens_per_s": res.tokens_per_s,
    }


def bench_clip(n_items: int, n_frames: int, batch_size: int, device: str, num_workers: int) -> dict:
    import pyarrow as pa
    from PIL import Image

    from tokenizer_kit.features import ExtractConfig, extract_features

    rng = np.random.default_rng(0)

    def png():
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buf, format="JPEG")
        return buf.getvalue()

    pool = [png() for _ in range(16)]
    table = pa.table({
        "item_id": [f"i{k}" for k in range(n_items)],
        "title": [f"synthetic item {k} with a short caption" for k in range(n_items)],
        "cover": pa.array([pool[k % 16] for k in range(n_items)], pa.binary()),
        "frames": pa.array([[pool[(k + j) % 16] for j in range(n_frames)] for k in range(n_items)], pa.list_(pa.binary())),
    })
    cfg = ExtractConfig(backend="open_clip", model="ViT-B-32", random_init=True, text_fields=("title",),
                        image_fields=("cover", "frames"), batch_size=batch_size, device=device, num_workers=num_workers)
    with tempfile.TemporaryDirectory() as d:
        c0 = time.perf_counter(), time.process_time()
        res = extract_features(table, Path(d) / "store", cfg)
        cpu = time.process_time() - c0[1]
    images = n_items * (1 + n_frames)
    return {
        "what": "open_clip ViT-B-32 random-init, synthetic 256x256 JPEG cover + frames, title",
        "n_items": n_items,
        "images_per_item": 1 + n_frames,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "device": device,
        "n_tokens": res.n_tokens,
        "seconds": res.seconds,
        "items_per_s": res.items_per_s,
        "images_per_s": images / res.seconds,
        "cpu_seconds_main_process_incl_model_build": cpu,
        "tokens_per_s": res.tokens_per_s,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=OFFICE, help="the Office data (default data/amazon-office)")
    ap.add_argument("--fields", default="title,description,brand,categories")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--clip-items", type=int, default=48, help="0 skips the open_clip run")
    ap.add_argument("--clip-frames", type=int, default=5)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args()
    out = {"benchmark": "extract", "argv": portable(sys.argv[1:]), "machine": machine(), "runs": []}
    if not a.skip_hf:
        out["runs"].append(bench_hf(a.data, a.fields.split(","), a.limit, a.batch_size, a.device))
        print(json.dumps(out["runs"][-1], indent=2), file=sys.stderr)
    if a.clip_items:
        out["runs"].append(bench_clip(a.clip_items, a.clip_frames, a.batch_size, a.device, a.num_workers))
        print(json.dumps(out["runs"][-1], indent=2), file=sys.stderr)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"extract-{socket.gethostname()}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out["load_avg_1m_at_end"] = os.getloadavg()[0]
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
