"""Render the HTML report of the Office tokenizers in a real headless browser and save a
screenshot, to check the page as a reader sees it (layout, plots, marks of the best values).

    python benchmarks/screenshot_report.py [--out benchmarks/results/report_screenshot.png]

Builds, in a temporary directory, RQ-Kmeans 3 x 256 (plain and balanced) on the bundled
Office MiniLM embeddings (tests/data/office_minilm_f16.npy), exports the plain one's SIDs as
an LC-Rec index (another tool's SIDs with a disambiguation level), writes the report with the
Office catalogue's titles and categories, and screenshots it with Chromium's headless shell
(`apt-get install chromium-headless-shell` on Debian; any chromium/chrome binary works, set
CHROME=/path/to/binary). Writes the PNG (and with --keep-html the page beside it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "amazon-office"
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser() -> str:
    for name in ([os.environ["CHROME"]] if os.environ.get("CHROME") else []) + list(BROWSERS):
        path = shutil.which(name) or (name if Path(name).is_file() else None)
        if path:
            return path
    sys.exit(f"no headless browser found (tried {', '.join(BROWSERS)}; set CHROME=/path/to/chrome)")


def cli(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "tokenizer_kit.cli.app", *args, "-q"], cwd=cwd, env=env, check=True)


def make_report(work: Path) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.load(REPO / "tests/data/office_minilm_f16.npy").astype(np.float32)
    ids = (REPO / "tests/data/office_minilm_f16.ids.txt").read_text().split()
    pq.write_table(pa.table({"item_id": ids, "embedding": pa.array(list(x), pa.list_(pa.float32(), x.shape[1]))}), work / "office.parquet")
    cli("build-codebook", "office.parquet", "--levels", "3", "--codebook-size", "256", "--out", "rq-kmeans", cwd=work)
    cli("build-codebook", "office.parquet", "--levels", "3", "--codebook-size", "256", "--balanced", "--out", "rq-kmeans-balanced", cwd=work)
    cli("index", "rq-kmeans", "--export-lcrec", "other_tool.index.json", cwd=work)
    cli("report", "rq-kmeans", "rq-kmeans-balanced", "other_tool.index.json", "--categories", str(DATA / "Office.item.json"),
        "--embeddings", "office.parquet", "--html", "report.html", cwd=work)
    return work / "report.html"


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 4200) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
           f"--screenshot={png.resolve()}", html.resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    if not png.is_file() or png.stat().st_size == 0:
        sys.exit(f"the browser wrote no screenshot: {' '.join(cmd)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/report_screenshot.png")
    ap.add_argument("--keep-html", action="store_true", help="Also copy the report's HTML beside the PNG.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        html = make_report(Path(tmp))
        screenshot(html, args.out)
        if args.keep_html:
            shutil.copyfile(html, args.out.with_suffix(".html"))
    print(f"{args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
