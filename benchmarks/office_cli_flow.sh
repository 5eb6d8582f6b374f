#!/usr/bin/env bash
# Office end to end from the CLI: build-codebook -> index -> assign (report) -> assign --update -> lookup.
# 10% of the items are held back from the build and cold-started. JSON outputs go to benchmarks/results/.
# usage: bash benchmarks/office_cli_flow.sh [EMB.npy IDS.txt]   (from any directory)
# EMB/IDS default to the bundled Office MiniLM embeddings (tests/data/office_minilm_f16.*);
# PYTHON (default: python on PATH) is an interpreter that imports this checkout's tokenizer_kit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EMB=${1:-$ROOT/tests/data/office_minilm_f16.npy}
IDS=${2:-$ROOT/tests/data/office_minilm_f16.ids.txt}
PY=${PYTHON:-python}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
TK="$PY -m tokenizer_kit.cli.app"
W=$(cd "$(mktemp -d)" && pwd -P)  # as the CLI prints it (no symlink in the way)
trap 'rm -rf "$W"' EXIT
R=$ROOT/benchmarks/results
export HF_HUB_OFFLINE=1
$PY - "$EMB" "$IDS" "$W" <<'PY'
import sys, numpy as np
x = np.load(sys.argv[1]).astype(np.float32); ids = [l.strip() for l in open(sys.argv[2]) if l.strip()]; w = sys.argv[3]
p = np.random.default_rng(0).permutation(len(x)); hold, keep = np.sort(p[: len(x) // 10]), np.sort(p[len(x) // 10 :])
for name, rows in (("base", keep), ("new", hold)):
    np.save(f"{w}/{name}.npy", x[rows]); open(f"{w}/{name}.ids.txt", "w").write("\n".join(ids[i] for i in rows) + "\n")
PY
$TK build-codebook $W/base.npy --ids $W/base.ids.txt --out $W/tok --codebook-size 256 --levels 3 --format json > $R/office_cli_build.json
$TK index $W/tok --policy suffix --embeddings $W/base.npy --ids $W/base.ids.txt \
    --export-lcrec $W/Office.index.json --vocab-out $W/vocab.json --format json > $R/office_cli_index.json
$TK assign $W/new.npy --ids $W/new.ids.txt --tokenizer $W/tok --format json > $R/office_cli_assign_report.json
$TK assign $W/new.npy --ids $W/new.ids.txt --tokenizer $W/tok --update --out $W/cold.parquet --format json > $R/office_cli_assign_update.json
$TK assign $W/new.npy --ids $W/new.ids.txt --tokenizer $W/tok --update --format json > $R/office_cli_assign_again.json
FIRST=$(head -1 $W/new.ids.txt)
$TK lookup $W/tok --item "$FIRST" --prefix "<a_0>" --format json > $R/office_cli_lookup.json
$TK import-index $W/Office.index.json --format json > $R/office_cli_import.json
ls -l $W/tok
sed -i.bak "s#$W#<tmp>#g" $R/office_cli_*.json && rm -f $R/office_cli_*.json.bak  # the results name no path of this machine
$PY - $R <<'PY'
import json, sys
r = sys.argv[1]
ix = json.load(open(f"{r}/office_cli_index.json")); up = json.load(open(f"{r}/office_cli_assign_update.json")); ag = json.load(open(f"{r}/office_cli_assign_again.json"))
print("index:", {k: ix[k] for k in ("version", "n_items", "collision_rate_codes", "collision_rate_sids", "max_suffix", "trie_nodes", "trie_bytes")})
print("update:", {k: up[k] for k in ("updated", "new", "collided", "version_before", "version_after", "index_items")})
print("again:", {k: ag[k] for k in ("updated", "new", "known", "version_after")})
PY
