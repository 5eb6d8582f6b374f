"""A corpus of bad inputs across every verb, and how one run of it is judged.

Each case is a command line (``{w}`` is the workspace folder) and a pattern that the error
message must contain, so that it names the problem. A run is:

* **clean**: non-zero exit, no traceback, one ``error:`` line on stderr (log lines aside)
  that matches the pattern, and every file of the workspace byte-identical afterwards;
* **traceback**: an exception escaped the verb (a Python traceback, or click's "Aborted!");
* **accepted**: exit 0 (the bad input went through);
* **state changed**: it failed, but a file in the workspace was created, changed or removed;
* **unclear**: it failed without a traceback, but the message is not one line naming the problem.

The workspace is built once (small embeddings, tokenizers with and without an index, a
catalogue, interactions, a feature store, pairs, an alignment model and many broken
variants of each) and restored after any case that changed it. Cases run in-process with
typer's ``CliRunner``. ``benchmarks/bad_inputs.py`` runs the same corpus on any checkout
and writes the counts as JSON; ``tests/test_bad_inputs.py`` asserts every case is clean.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["Case", "CASES", "build_workspace", "run_case", "snapshot"]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    names: str  # regex (case-insensitive) the one-line message must match


def _c(id: str, argv: str, names: str) -> Case:
    return Case(id, tuple(argv.split()), names)


# ------------------------------------------------------------------------------------ corpus
# one line per case: id, command line, what the message must name
_DIR = r"director|folder"
_UTF8 = r"UTF-8|utf-?8|not valid text|encod"
_MISSING = r"does not exist|not found|no such"
_NOT_DIR = r"not a directory|is a file|not a folder"
_TOK = "{w}/tok"
_SMALL_ALIGN = ("--caption-weight 0 --d-model 16 --n-heads 2 --n-layers 1 --batch-size 4 --eval-fraction 0 --device cpu "
                "--checkpoint-every 1 --log-every 1")

CASES: list[Case] = [
    # ---- build-codebook: embeddings
    _c("build/missing-input", "build-codebook {w}/nope.npy --out {w}/o1", _MISSING),
    _c("build/dir-no-shards", "build-codebook {w}/adir --out {w}/o1", r"no .*(npy|parquet|shard)|director"),
    _c("build/empty-npy", "build-codebook {w}/empty.npy --out {w}/o1", r"empty|no data|not a valid|cannot read|corrupt"),
    _c("build/garbage-npy", "build-codebook {w}/garbage.npy --out {w}/o1", r"npy|cannot read|corrupt|not a valid"),
    _c("build/int-npy", "build-codebook {w}/int.npy --out {w}/o1", r"int|integer|dtype|float"),
    _c("build/bool-npy", "build-codebook {w}/bool.npy --out {w}/o1", r"bool|dtype|float"),
    _c("build/complex-npy", "build-codebook {w}/complex.npy --out {w}/o1", r"complex|dtype|float"),
    _c("build/str-npy", "build-codebook {w}/str.npy --out {w}/o1", r"str|dtype|float|<U"),
    _c("build/obj-npy", "build-codebook {w}/obj.npy --out {w}/o1", r"object|pickle|dtype"),
    _c("build/nan-npy", "build-codebook {w}/nan.npy --out {w}/o1", r"row 7 contains NaN"),
    _c("build/inf-npy", "build-codebook {w}/inf.npy --out {w}/o1", r"row 9 contains inf"),
    _c("build/1d-npy", "build-codebook {w}/1d.npy --out {w}/o1", r"shape|dimension|2-D|\(n, d\)"),
    _c("build/3d-npy", "build-codebook {w}/3d.npy --out {w}/o1", r"shape|dimension|2-D|\(n, d\)"),
    _c("build/zero-rows", "build-codebook {w}/zero_rows.npy --out {w}/o1", r"empty|no items|0 rows|too few"),
    _c("build/zero-dim", "build-codebook {w}/zero_dim.npy --out {w}/o1", r"dimension|empty|0 columns|width"),
    _c("build/no-ids", "build-codebook {w}/noids.npy --out {w}/o1", r"no ids file.*--row-ids"),
    _c("assign/no-ids", "assign {w}/noids.npy --tokenizer {w}/tok --out {w}/a.parquet", r"no ids file.*--row-ids"),
    _c("build/too-few-items", "build-codebook {w}/few.npy --out {w}/o1", r"items|fewer|too few|codebook"),
    _c("build/ids-short", "build-codebook {w}/emb.npy --ids {w}/ids_short.txt --out {w}/o1", r"ids? .*for|one id per row|item ids"),
    _c("build/ids-dup", "build-codebook {w}/emb.npy --ids {w}/ids_dup.txt --out {w}/o1", r"duplicate"),
    _c("build/ids-dir", "build-codebook {w}/emb.npy --ids {w}/adir --out {w}/o1", _DIR),
    _c("build/ids-missing", "build-codebook {w}/emb.npy --ids {w}/nope.txt --out {w}/o1", _MISSING),
    _c("build/ids-nonutf8", "build-codebook {w}/emb.npy --ids {w}/nonutf8.txt --out {w}/o1", _UTF8),
    _c("build/ids-json-dict", "build-codebook {w}/emb.npy --ids {w}/ids_dict.json --out {w}/o1", r"list|array"),
    _c("build/ids-json-bad", "build-codebook {w}/emb.npy --ids {w}/bad.json --out {w}/o1", r"JSON"),
    _c("build/ids-npy-pickle", "build-codebook {w}/emb.npy --ids {w}/obj.npy --out {w}/o1", r"object|pickle|ids"),
    _c("build/ids-blank-line", "build-codebook {w}/emb.npy --ids {w}/ids_blank.txt --out {w}/o1", r"empty|blank|ids? .*for|one id per row"),
    _c("build/parquet-garbage", "build-codebook {w}/garbage.parquet --out {w}/o1", r"parquet"),
    _c("build/parquet-empty-file", "build-codebook {w}/empty.parquet --out {w}/o1", r"parquet|empty"),
    _c("build/parquet-null-id", "build-codebook {w}/null_id.parquet --out {w}/o1", r"null|missing.*id|None"),
    _c("build/parquet-dup-id", "build-codebook {w}/dup_id.parquet --out {w}/o1", r"duplicate"),
    _c("build/parquet-ragged", "build-codebook {w}/ragged.parquet --out {w}/o1", r"length|ragged|same"),
    _c("build/parquet-no-vector", "build-codebook {w}/novec.parquet --out {w}/o1", r"vector|column"),
    _c("build/parquet-str-vector", "build-codebook {w}/strvec.parquet --out {w}/o1", r"vector|column|list|float|string"),
    _c("build/parquet-null-vector", "build-codebook {w}/nullvec.parquet --out {w}/o1", r"null|missing|None"),
    _c("build/parquet-int-vector", "build-codebook {w}/intvec.parquet --out {w}/o1", r"int|integer|float"),
    _c("build/parquet-no-id-col", "build-codebook {w}/emb.parquet --id-column nope --out {w}/o1", r"column|nope"),
    _c("build/parquet-bad-vector-col", "build-codebook {w}/emb.parquet --vector-column nope --out {w}/o1", r"column|nope"),
    # ---- build-codebook: settings and outputs
    _c("build/codebook-size-abc", "build-codebook {w}/emb.npy --out {w}/o1 --codebook-size abc", r"codebook.size"),
    _c("build/codebook-size-zero", "build-codebook {w}/emb.npy --out {w}/o1 --codebook-size 0", r"codebook.size"),
    _c("build/codebook-size-1", "build-codebook {w}/emb.npy --out {w}/o1 --codebook-size 1", r"codebook.size"),
    _c("build/codebook-size-mismatch", "build-codebook {w}/emb.npy --out {w}/o1 --levels 3 --codebook-size 8,8", r"codebook.size|levels"),
    _c("build/levels-zero", "build-codebook {w}/emb.npy --out {w}/o1 --levels 0", r"levels"),
    _c("build/levels-negative", "build-codebook {w}/emb.npy --out {w}/o1 --levels -2", r"levels"),
    _c("build/seed-negative", "build-codebook {w}/emb.npy --out {w}/o1 --seed -1", r"seed"),
    _c("build/seed-huge", "build-codebook {w}/emb.npy --out {w}/o1 --seed 99999999999999", r"seed"),
    _c("build/niter-zero", "build-codebook {w}/emb.npy --out {w}/o1 --niter 0", r"niter"),
    _c("build/beam-zero", "build-codebook {w}/emb.npy --out {w}/o1 --beam-size 0", r"beam"),
    _c("build/method-bogus", "build-codebook {w}/emb.npy --out {w}/o1 --method bogus", r"method"),
    _c("build/device-banana", "build-codebook {w}/emb.npy --out {w}/o1 --device banana", r"device"),
    _c("build/max-points-zero", "build-codebook {w}/emb.npy --out {w}/o1 --max-points-per-centroid 0", r"max.points"),
    _c("build/config-list", "build-codebook {w}/emb.npy --out {w}/o1 --config {w}/cfg_list.json", r"config|object|table"),
    _c("build/config-niter-abc", "build-codebook {w}/emb.npy --out {w}/o1 --config {w}/cfg_niter.json", r"niter"),
    _c("build/config-unknown-key", "build-codebook {w}/emb.npy --out {w}/o1 --config {w}/cfg_unknown.json", r"bogus|unknown"),
    _c("build/config-nonutf8", "build-codebook {w}/emb.npy --out {w}/o1 --config {w}/nonutf8.json", _UTF8),
    _c("build/config-dir", "build-codebook {w}/emb.npy --out {w}/o1 --config {w}/adir", _DIR),
    _c("build/config-missing", "build-codebook {w}/emb.npy --out {w}/o1 --config {w}/nope.json", _MISSING),
    _c("build/config-toml-seed-abc", "build-codebook {w}/emb.npy --out {w}/o1 --config {w}/cfg_seed.toml", r"seed"),
    _c("build/config-toml-broken", "build-codebook {w}/emb.npy --out {w}/o1 --config {w}/broken.toml", r"TOML|toml|parse|invalid"),
    _c("build/preset-unknown", "build-codebook {w}/emb.npy --out {w}/o1 --preset nope", r"preset"),
    _c("build/out-exists", "build-codebook {w}/emb.npy --out {w}/tok", r"exists|overwrite"),
    _c("build/out-is-file", "build-codebook {w}/emb.npy --out {w}/afile --overwrite", r"not a directory|is a file|exists"),
    _c("build/out-under-file", "build-codebook {w}/emb.npy --out {w}/afile/o1", _NOT_DIR),
    _c("build/out-unwritable", "build-codebook {w}/emb.npy --out /proc/tk-nope/o1", r"writ|permission|cannot create|read-only|not allowed|No such"),
    _c("build/rqvae-resume-not-ckpt", "build-codebook {w}/emb.npy --out {w}/o1 --method rq-vae --codebook-size 8 --max-epochs 2 --resume-from {w}/adir", r"trainer_state|checkpoint"),
    _c("build/rqvae-resume-bad-json", "build-codebook {w}/emb.npy --out {w}/o1 --method rq-vae --codebook-size 8 --max-epochs 2 --resume-from {w}/ckpt_badjson", r"trainer_state|checkpoint"),
    _c("build/rqvae-resume-nonutf8", "build-codebook {w}/emb.npy --out {w}/o1 --method rq-vae --codebook-size 8 --max-epochs 2 --resume-from {w}/ckpt_nonutf8", r"trainer_state|checkpoint"),
    _c("build/categories-missing", "build-codebook {w}/emb.npy --ids {w}/emb.ids.txt --out {w}/o1 --categories {w}/nope.parquet", _MISSING),
    _c("build/categories-no-column", "build-codebook {w}/emb.npy --ids {w}/emb.ids.txt --out {w}/o1 --categories {w}/catalog.parquet --category-column nope", r"nope|column"),
    _c("build/categories-nonutf8", "build-codebook {w}/emb.npy --ids {w}/emb.ids.txt --out {w}/o1 --categories {w}/nonutf8.item.json", _UTF8),
    # ---- assign
    _c("assign/no-tokenizer", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/nope --out {w}/a.parquet", _MISSING),
    _c("assign/tokenizer-is-file", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/afile --out {w}/a.parquet", r"not a tokenizer|director"),
    _c("assign/tokenizer-empty-dir", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/adir --out {w}/a.parquet", r"manifest.json"),
    _c("assign/out-is-dir", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/tok --out {w}/adir", _DIR),
    _c("assign/out-under-file", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/tok --out {w}/afile/a.parquet", _NOT_DIR),
    _c("assign/update-out-unwritable", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/tok --update --out {w}/afile/a.parquet", _NOT_DIR),
    _c("assign/update-out-dir", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/tok --update --out {w}/adir", _DIR),
    _c("assign/update-no-index", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/raw_tok --update", r"index"),
    _c("assign/raw-no-out", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/raw_tok", r"--out"),
    _c("assign/dim-mismatch", "assign {w}/dim8.npy --tokenizer {w}/tok --out {w}/a.parquet", r"dimension"),
    _c("assign/int-emb", "assign {w}/int.npy --tokenizer {w}/tok --out {w}/a.parquet", r"int|integer|dtype|float"),
    _c("assign/nan-emb", "assign {w}/nan.npy --tokenizer {w}/tok --out {w}/a.parquet", r"row 7 contains NaN"),
    _c("assign/null-id", "assign {w}/null_id.parquet --tokenizer {w}/tok --update", r"null|missing.*id|None"),
    _c("assign/dup-id", "assign {w}/dup_id.parquet --tokenizer {w}/tok --update", r"duplicate"),
    _c("assign/batch-zero", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/tok --out {w}/a.parquet --batch-size 0", r"batch"),
    _c("assign/show-negative", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/tok --show -1", r"show"),
    _c("assign/changed-embedding", "assign {w}/emb_shifted.npy --ids {w}/emb.ids.txt --tokenizer {w}/tok --update", r"replace|different embedding"),
    # the default build's index holds the embeddings' fingerprints too (no `index --embeddings` needed)
    _c("assign/changed-embedding-default-build", "assign {w}/emb_shifted.npy --ids {w}/emb.ids.txt --tokenizer {w}/def_tok --update", r"300 known items come with a different embedding"),
    _c("assign/t-index-version-abc", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_index_version --update", r"sections.index.version is 'abc'"),
    _c("assign/t-int-codebook", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_int_codebook --update", r"codebook_1.*int64.*floating"),
    _c("assign/t-index-hash-float", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_hash_float --update", r"emb_hash.*float64"),
    _c("assign/t-no-method", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_no_method --out {w}/a.parquet", r"method"),
    _c("assign/t-config-list", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_config_list --out {w}/a.parquet", r"config"),
    _c("assign/t-config-niter-abc", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_niter_abc --out {w}/a.parquet", r"niter|config"),
    _c("assign/t-files-emptied", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_files_empty --out {w}/a.parquet", r"files|list|checksum"),
    _c("assign/t-dotdot", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_dotdot --update", r"plain name|\.\."),
    _c("assign/t-nan-codebook", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_nan --out {w}/a.parquet", r"NaN|finite"),
    _c("assign/t-code-999", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_code999 --update", r"999|outside|range|codebook"),
    _c("assign/t-dup-rows", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_dup_rows --update", r"duplicate|more than one row"),
    _c("assign/t-newer-format", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_newer --out {w}/a.parquet", r"newer"),
    _c("assign/t-corrupt-json", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_corrupt --out {w}/a.parquet", r"corrupt|JSON"),
    _c("assign/t-nonutf8-manifest", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_nonutf8 --out {w}/a.parquet", _UTF8 + "|corrupt"),
    _c("assign/t-missing-weights", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_no_weights --out {w}/a.parquet", r"quantizer.safetensors"),
    _c("assign/t-tampered-sids", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_tampered --update", r"checksum"),
    _c("assign/t-edited-manifest", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_edited --out {w}/a.parquet", r"checksum|edited"),
    _c("assign/t-sizes-wrong-type", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_sizes_str --out {w}/a.parquet", r"codebook_sizes"),
    _c("assign/t-garbage-weights", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_garbage_weights --out {w}/a.parquet", r"quantizer.safetensors|cannot be read"),
    _c("assign/t-garbage-sids", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_garbage_sids --update", r"sids.parquet|cannot be read"),
    _c("assign/t-null-id-rows", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_null_ids --update", r"null"),
    _c("assign/t-symlink", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_symlink --update", r"regular file|symlink"),
    _c("assign/t-bad-trie", "assign {w}/new.npy --ids {w}/new.ids.txt --tokenizer {w}/t_bad_trie --update", r"trie"),
    # ---- index
    _c("index/no-tokenizer", "index {w}/nope", _MISSING),
    _c("index/policy-bogus", "index {w}/raw_tok --policy bogus", r"policy"),
    _c("index/reassign-no-emb", "index {w}/raw_tok --policy reassign", r"embedding"),
    _c("index/emb-missing-items", "index {w}/raw_tok --embeddings {w}/new.npy --ids {w}/new.ids.txt", r"lack|missing|indexed items"),
    _c("index/emb-dim", "index {w}/raw_tok --embeddings {w}/dim8.npy", r"dimension|vectors"),
    _c("index/vocab-out-dir", "index {w}/tok --vocab-out {w}/adir", _DIR),
    _c("index/vocab-out-unwritable", "index {w}/tok --vocab-out {w}/afile/v.json", _NOT_DIR),
    _c("index/export-lcrec-dir", "index {w}/tok --export-lcrec {w}/adir", _DIR),
    _c("index/export-lcrec-unwritable", "index {w}/tok --export-lcrec {w}/afile/x.index.json", _NOT_DIR),
    _c("index/suffix-reserve-zero", "index {w}/raw_tok --suffix-reserve 0", r"suffix.reserve"),
    _c("index/nearest-k-negative", "index {w}/raw_tok --nearest-k -1", r"nearest.k"),
    _c("index/vocab-base-negative", "index {w}/tok --vocab-base -5", r"vocab.base"),
    _c("index/config-list", "index {w}/raw_tok --config {w}/cfg_list.json", r"config|object|table"),
    _c("index/config-dir", "index {w}/raw_tok --config {w}/adir", _DIR),
    _c("index/t-code-999", "index {w}/t_code999", r"999|outside|range|codebook"),
    _c("index/t-files-emptied", "index {w}/t_files_empty", r"files|list|checksum"),
    _c("index/ids-dir", "index {w}/raw_tok --embeddings {w}/emb.npy --ids {w}/adir", _DIR),
    # ---- lookup / import-index / compact
    _c("lookup/nothing", "lookup {w}/tok", r"--item|--sid|--prefix|nothing"),
    _c("lookup/unknown-item", "lookup {w}/tok --item nope", r"not in the index|nope"),
    _c("lookup/bad-sid", "lookup {w}/tok --sid abc", r"SID|form"),
    _c("lookup/sid-order", "lookup {w}/tok --sid <b_1><a_2>", r"expected <a_|order|token"),
    _c("lookup/sid-length", "lookup {w}/tok --sid <a_1>", r"tokens|length|prefix"),
    _c("lookup/bad-prefix", "lookup {w}/tok --prefix x", r"SID|form"),
    _c("lookup/no-index", "lookup {w}/raw_tok --item i0", r"index"),
    _c("lookup/limit-negative", "lookup {w}/tok --prefix <a_1> --limit -1", r"limit"),
    _c("lookup/source-missing", "lookup {w}/nope.index.json --item 1", _MISSING),
    _c("lookup/lcrec-nonutf8", "lookup {w}/nonutf8.index.json --item 1", _UTF8),
    _c("lookup/lcrec-big-code", "lookup {w}/big.index.json --item 1", r"too large|int64|range|code"),
    _c("lookup/sid-separated", "lookup {w}/tok --sid <a_1>,<b_2>,<c_3>,<d_0>", r"not of the form <a_3><b_4><c_1>.*unexpected ',"),
    _c("lookup/sid-codes-only", "lookup {w}/tok --sid 1,2,3,0", r"not of the form <a_3><b_4><c_1>"),
    _c("lookup/prefix-too-long", "lookup {w}/tok --prefix <a_1><b_2><c_3><d_0><e_1>", r"5 tokens.*SIDs in this index have 4"),
    _c("lookup/t-index-version-abc", "lookup {w}/t_index_version --item i1", r"sections.index.version is 'abc'"),
    _c("lookup/sid-big-code", "lookup {w}/tok --sid <a_99999999999999999999999><b_1><c_1><d_0>", r"too large|int64|range|code"),
    _c("import/missing", "import-index {w}/nope.index.json", _MISSING),
    _c("import/dir", "import-index {w}/adir", _DIR + r"|index.json"),
    _c("import/nonutf8", "import-index {w}/nonutf8.index.json", _UTF8),
    _c("import/bad-json", "import-index {w}/bad.json", r"JSON"),
    _c("import/big-code", "import-index {w}/big.index.json", r"too large|int64|range|code"),
    _c("import/level-order", "import-index {w}/order.index.json", r"order|level|expected <a_|<b_1>"),
    _c("import/negative-code", "import-index {w}/neg.index.json", r"token|negative|<a_-1>"),
    _c("import/not-list", "import-index {w}/notlist.index.json", r"list|token"),
    _c("import/empty", "import-index {w}/emptyobj.index.json", r"empty|non-empty"),
    _c("import/mixed-length", "import-index {w}/mixed.index.json", r"same length|tokens"),
    _c("import/bad-token", "import-index {w}/badtok.index.json", r"token"),
    _c("import/top-level-list", "import-index {w}/cfg_list.json", r"object"),
    _c("import/dup-keys", "import-index {w}/dupkey.index.json", r"duplicate|twice"),
    _c("import/out-exists", "import-index {w}/tok.index.json --out {w}/tok", r"exists|overwrite"),
    _c("import/out-is-file", "import-index {w}/tok.index.json --out {w}/afile --overwrite", r"not a directory|is a file"),
    _c("import/out-under-file", "import-index {w}/tok.index.json --out {w}/afile/t", _NOT_DIR),
    _c("import/policy-bogus", "import-index {w}/tok.index.json --out {w}/t1 --policy bogus", r"policy"),
    _c("import/levels-zero", "import-index {w}/tok.index.json --out {w}/t1 --levels 0", r"levels"),
    _c("import/levels-too-many", "import-index {w}/tok.index.json --out {w}/t1 --levels 9", r"levels"),
    _c("import/codebook-size-small", "import-index {w}/tok.index.json --out {w}/t1 --codebook-size 2", r"codebook.size|code"),
    _c("compact/no-index", "compact {w}/raw_tok", r"index"),
    _c("compact/missing", "compact {w}/nope", _MISSING),
    _c("compact/t-dup-rows", "compact {w}/t_dup_rows", r"duplicate|more than one row"),
    # ---- report
    _c("report/missing-target", "report {w}/nope", _MISSING),
    _c("report/target-file", "report {w}/afile", r"not a tokenizer|index.json|director"),
    _c("report/html-dir", "report {w}/tok --html {w}/adir", _DIR),
    _c("report/html-unwritable", "report {w}/tok --html {w}/afile/r.html", _NOT_DIR),
    _c("report/lcrec-nonutf8", "report {w}/nonutf8.index.json", _UTF8),
    _c("report/lcrec-big-code", "report {w}/big.index.json", r"too large|int64|range|code"),
    _c("report/emb-dim", "report {w}/tok --embeddings {w}/dim8.npy", r"dimension|vectors"),
    _c("report/emb-missing-items", "report {w}/tok --embeddings {w}/new.parquet", r"lack|missing|items"),
    _c("report/categories-nonutf8", "report {w}/tok --categories {w}/nonutf8.item.json", _UTF8),
    _c("report/codebook-size-abc", "report {w}/tok.index.json --codebook-size abc", r"codebook.size"),
    _c("report/codebook-size-small", "report {w}/tok.index.json --codebook-size 2", r"codebook.size|larger|code"),
    _c("report/t-nan", "report {w}/t_nan", r"NaN|finite"),
    _c("report/t-code-999", "report {w}/t_code999", r"999|outside|range|codebook"),
    _c("report/t-dup-rows", "report {w}/t_dup_rows", r"duplicate|more than one row"),
    _c("report/t-index-version-abc", "report {w}/t_index_version", r"sections.index.version is 'abc'"),
    _c("report/t-int-codebook", "report {w}/t_int_codebook", r"codebook_1.*int64.*floating"),
    # ---- embed-text
    _c("embed-text/missing", "embed-text {w}/nope.parquet --out {w}/e.parquet", _MISSING),
    _c("embed-text/nonutf8", "embed-text {w}/nonutf8.item.json --out {w}/e.parquet", _UTF8),
    _c("embed-text/bad-jsonl", "embed-text {w}/bad.jsonl --out {w}/e.parquet", r"JSON|jsonl|line"),
    _c("embed-text/garbage-parquet", "embed-text {w}/garbage.parquet --out {w}/e.parquet", r"parquet"),
    _c("embed-text/no-id", "embed-text {w}/cat_noid.parquet --out {w}/e.parquet", r"item_id"),
    _c("embed-text/no-fields", "embed-text {w}/catalog.parquet --out {w}/e.parquet --fields nope", r"nope|field|column"),
    _c("embed-text/out-dir", "embed-text {w}/catalog.parquet --out {w}/adir", _DIR),
    _c("embed-text/out-exists", "embed-text {w}/catalog.parquet --out {w}/emb.parquet", r"exists|overwrite"),
    _c("embed-text/out-unwritable", "embed-text {w}/catalog.parquet --out {w}/afile/e.parquet", _NOT_DIR),
    _c("embed-text/device-banana", "embed-text {w}/catalog.parquet --out {w}/e.parquet --device banana", r"device"),
    _c("embed-text/device-cuda", "embed-text {w}/catalog.parquet --out {w}/e.parquet --device cuda", r"GPU|CUDA|cuda"),
    _c("embed-text/model-missing", "embed-text {w}/catalog.parquet --out {w}/e.parquet --model {w}/nope-model", r"model"),
    _c("embed-text/model-not-a-model", "embed-text {w}/catalog.parquet --out {w}/e.parquet --model {w}/adir", r"model"),
    _c("embed-text/batch-zero", "embed-text {w}/catalog.parquet --out {w}/e.parquet --batch-size 0", r"batch"),
    _c("embed-text/dup-ids", "embed-text {w}/cat_dup.parquet --out {w}/e.parquet", r"duplicate"),
    _c("embed-text/empty", "embed-text {w}/cat_empty.parquet --out {w}/e.parquet", r"empty"),
    _c("embed-text/null-id", "embed-text {w}/cat_null_id.parquet --out {w}/e.parquet", r"null|missing"),
    # ---- extract
    _c("extract/missing", "extract {w}/nope.parquet --out {w}/f1 --text-fields title", _MISSING),
    _c("extract/nonutf8", "extract {w}/nonutf8.item.json --out {w}/f1 --text-fields title", _UTF8),
    _c("extract/no-fields", "extract {w}/catalog.parquet --out {w}/f1 --text-fields nope", r"nope|column"),
    _c("extract/out-is-file", "extract {w}/catalog.parquet --out {w}/afile --text-fields title", r"not a directory|is a file|exists"),
    _c("extract/out-under-file", "extract {w}/catalog.parquet --out {w}/afile/f1 --text-fields title", _NOT_DIR),
    _c("extract/device-banana", "extract {w}/catalog.parquet --out {w}/f1 --text-fields title --device banana", r"device"),
    _c("extract/device-cuda", "extract {w}/catalog.parquet --out {w}/f1 --text-fields title --device cuda", r"GPU|CUDA|cuda"),
    _c("extract/backend-bogus", "extract {w}/catalog.parquet --out {w}/f1 --text-fields title --backend bogus", r"backend"),
    _c("extract/batch-zero", "extract {w}/catalog.parquet --out {w}/f1 --text-fields title --batch-size 0", r"batch"),
    _c("extract/shard-zero", "extract {w}/catalog.parquet --out {w}/f1 --text-fields title --shard-size 0", r"shard"),
    _c("extract/other-config", "extract {w}/catalog.parquet --out {w}/feats --text-fields title --max-tokens-per-field 3", r"another config|overwrite"),
    _c("extract/model-missing", "extract {w}/catalog.parquet --out {w}/f1 --text-fields title --model {w}/nope-model", r"model"),
    _c("extract/dup-ids", "extract {w}/cat_dup.parquet --out {w}/f1 --text-fields title", r"duplicate"),
    _c("extract/config-nonutf8", "extract {w}/catalog.parquet --out {w}/f1 --config {w}/nonutf8.json", _UTF8),
    # ---- mine-pairs
    _c("mine/missing", "mine-pairs {w}/nope.parquet --out {w}/p.parquet", _MISSING),
    _c("mine/nonutf8", "mine-pairs {w}/nonutf8.inter.json --out {w}/p.parquet", _UTF8),
    _c("mine/bad-json", "mine-pairs {w}/bad.inter.json --out {w}/p.parquet", r"JSON"),
    _c("mine/not-list", "mine-pairs {w}/inter_notlist.inter.json --out {w}/p.parquet", r"list"),
    _c("mine/empty-object", "mine-pairs {w}/emptyobj.inter.json --out {w}/p.parquet", r"empty|non-empty|no interactions"),
    _c("mine/one-user-one-item", "mine-pairs {w}/inter_one.parquet --out {w}/p.parquet", r"user|item|interaction|pair"),
    _c("mine/one-item", "mine-pairs {w}/inter_oneitem.parquet --out {w}/p.parquet", r"item|pair"),
    _c("mine/no-rows", "mine-pairs {w}/inter_empty.parquet --out {w}/p.parquet", r"no interactions|empty"),
    _c("mine/text-timestamp", "mine-pairs {w}/inter_text_ts.parquet --out {w}/p.parquet", r"timestamp.*holds text \('a' at row 0\)"),
    _c("mine/no-user-col", "mine-pairs {w}/inter_nocol.parquet --out {w}/p.parquet", r"user_id"),
    _c("mine/null-ids", "mine-pairs {w}/inter_nullid.parquet --out {w}/p.parquet", r"null|missing"),
    _c("mine/garbage-parquet", "mine-pairs {w}/garbage.parquet --out {w}/p.parquet", r"parquet"),
    _c("mine/out-dir", "mine-pairs {w}/inter.parquet --out {w}/adir", _DIR),
    _c("mine/out-exists", "mine-pairs {w}/inter.parquet --out {w}/pairs.parquet", r"exists|overwrite"),
    _c("mine/heldout-unwritable", "mine-pairs {w}/inter.parquet --out {w}/p.parquet --heldout-out {w}/afile/h.parquet", _NOT_DIR),
    _c("mine/heldout-dir", "mine-pairs {w}/inter.parquet --out {w}/p.parquet --heldout-out {w}/adir", _DIR),
    _c("mine/swing-topk-negative", "mine-pairs {w}/inter.parquet --out {w}/p.parquet --swing-topk -1", r"swing.topk"),
    _c("mine/alpha-negative", "mine-pairs {w}/inter.parquet --out {w}/p.parquet --alpha -1", r"alpha"),
    _c("mine/config-list", "mine-pairs {w}/inter.parquet --out {w}/p.parquet --config {w}/cfg_list.json", r"config|object|table"),
    # ---- align
    _c("align/features-missing", "align --features {w}/nope --pairs {w}/pairs.parquet --out {w}/al1 --caption-weight 0", _MISSING + r"|feature store"),
    _c("align/features-not-store", "align --features {w}/adir --pairs {w}/pairs.parquet --out {w}/al1 --caption-weight 0", r"feature store|manifest"),
    _c("align/features-corrupt", "align --features {w}/feats_corrupt --pairs {w}/pairs.parquet --out {w}/al1 --caption-weight 0", r"shard|bytes|corrupt"),
    _c("align/features-nonutf8", "align --features {w}/feats_nonutf8 --pairs {w}/pairs.parquet --out {w}/al1 --caption-weight 0", _UTF8 + "|corrupt"),
    _c("align/pairs-missing", "align --features {w}/feats --pairs {w}/nope.parquet --out {w}/al1 --caption-weight 0", _MISSING),
    _c("align/pairs-garbage", "align --features {w}/feats --pairs {w}/garbage.parquet --out {w}/al1 --caption-weight 0", r"parquet"),
    _c("align/pairs-jsonl", "align --features {w}/feats --pairs {w}/bad.jsonl --out {w}/al1 --caption-weight 0", r"parquet|pairs"),
    _c("align/pairs-no-cols", "align --features {w}/feats --pairs {w}/catalog.parquet --out {w}/al1 --caption-weight 0", r"item_a|column"),
    _c("align/pairs-unknown-items", "align --features {w}/feats --pairs {w}/pairs_unknown.parquet --out {w}/al1 --caption-weight 0", r"not in the feature store|unknown|pairs"),
    _c("align/out-is-file", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/afile --caption-weight 0", r"not a directory|is a file|exists"),
    _c("align/out-other-config", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/align --caption-weight 0", r"another config|overwrite"),
    _c("align/steps-negative", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al1 --caption-weight 0 --steps -5", r"steps"),
    _c("align/batch-one", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al1 --caption-weight 0 --batch-size 1", r"batch.size"),
    _c("align/heads-not-dividing", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al1 --caption-weight 0 --d-model 30 --n-heads 4", r"n.heads|d.model|divide"),
    _c("align/lr-zero", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al1 --caption-weight 0 --lr 0", r"lr"),
    _c("align/device-banana", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al1 --caption-weight 0 --device banana", r"device"),
    _c("align/device-cuda", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al1 --caption-weight 0 --device cuda", r"GPU|CUDA|cuda"),
    _c("align/caption-no-catalog", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al1", r"catalog"),
    _c("align/caption-lm-missing", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al1 --catalog {w}/catalog.parquet --caption-lm {w}/nope-lm", r"caption.lm|model|nope-lm"),
    # resumed with exactly the settings the checkpoint was written with, so its file is read
    _c("align/resume-pickle", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al_pickle --steps 2 " + _SMALL_ALIGN, r"holds code|never unpickled|unpickl"),
    _c("align/resume-corrupt", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al_corrupt_ckpt --steps 2 " + _SMALL_ALIGN, r"corrupt|cannot be loaded"),
    _c("align/eval-pairs-garbage", "align --features {w}/feats --pairs {w}/pairs.parquet --eval-pairs {w}/garbage.parquet --out {w}/al1 --caption-weight 0", r"parquet"),
    _c("align/config-nonutf8", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al1 --config {w}/nonutf8.json", _UTF8),
    # ---- embed
    _c("embed/alignment-missing", "embed --features {w}/feats --alignment {w}/nope --out {w}/e.parquet", _MISSING + r"|alignment"),
    _c("embed/alignment-empty", "embed --features {w}/feats --alignment {w}/adir --out {w}/e.parquet", r"alignment|config.json"),
    _c("embed/alignment-newer", "embed --features {w}/feats --alignment {w}/al_newer --out {w}/e.parquet", r"newer"),
    _c("embed/alignment-garbage-weights", "embed --features {w}/feats --alignment {w}/al_garbage --out {w}/e.parquet", r"model.safetensors|cannot be read|checksum"),
    _c("embed/alignment-nonutf8", "embed --features {w}/feats --alignment {w}/al_nonutf8 --out {w}/e.parquet", _UTF8 + "|corrupt"),
    _c("embed/alignment-is-tokenizer", "embed --features {w}/feats --alignment {w}/tok --out {w}/e.parquet", r"alignment|config.json"),
    _c("embed/features-dim", "embed --features {w}/feats_dim4 --alignment {w}/align --out {w}/e.parquet", r"dim|dimension"),
    _c("embed/out-dir", "embed --features {w}/feats --alignment {w}/align --out {w}/adir", _DIR),
    _c("embed/out-exists", "embed --features {w}/feats --alignment {w}/align --out {w}/emb.parquet", r"exists|overwrite"),
    _c("embed/out-unwritable", "embed --features {w}/feats --alignment {w}/align --out {w}/afile/e.parquet", _NOT_DIR),
    _c("embed/pooling-bogus", "embed --features {w}/feats --alignment {w}/align --out {w}/e.parquet --pooling bogus", r"pooling"),
    _c("embed/device-banana", "embed --features {w}/feats --alignment {w}/align --out {w}/e.parquet --device banana", r"device"),
    _c("embed/batch-zero", "embed --features {w}/feats --alignment {w}/align --out {w}/e.parquet --batch-size 0", r"batch"),
    # ---- evaluate-retrieval
    _c("retrieval/tokenizer-missing", "evaluate-retrieval --tokenizer {w}/nope --interactions {w}/inter.parquet", _MISSING),
    _c("retrieval/t-code-999", "evaluate-retrieval --tokenizer {w}/t_code999 --interactions {w}/inter.parquet", r"999|outside|range|codebook"),
    _c("retrieval/inter-missing", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/nope.parquet", _MISSING),
    _c("retrieval/inter-nonutf8", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/nonutf8.inter.json", _UTF8),
    _c("retrieval/inter-one", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter_one.parquet --epochs 1", r"user|interaction|train|item"),
    _c("retrieval/inter-unknown-items", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter_unknown.parquet --epochs 1", r"item|index|user"),
    _c("retrieval/out-dir", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --out {w}/adir", _DIR),
    _c("retrieval/out-unwritable", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --out {w}/afile/r.json", _NOT_DIR),
    _c("retrieval/model-out-file", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --model-out {w}/afile", r"not a directory|is a file|exists"),
    _c("retrieval/epochs-negative", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --epochs -1", r"epochs"),
    _c("retrieval/heads", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --d-model 30 --n-heads 4", r"n.heads|d.model|divide"),
    _c("retrieval/device-banana", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --device banana", r"device"),
    _c("retrieval/device-cuda", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --device cuda", r"GPU|CUDA|cuda"),
    _c("retrieval/ks-abc", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --ks abc", r"ks"),
    _c("retrieval/beam-small", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --beam-size 2 --ks 5,10", r"beam"),
    _c("retrieval/lcrec-big", "evaluate-retrieval --tokenizer {w}/big.index.json --interactions {w}/inter.parquet", r"too large|int64|range|code"),
    _c("retrieval/causal-lm-model-missing", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --arch causal-lm "
       "--model {w}/nope", _MISSING),
    _c("retrieval/causal-lm-model-not-hf", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --arch causal-lm "
       "--model {w}/tok", r"not an HF model|config.json"),
    _c("retrieval/causal-lm-no-model", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --arch causal-lm", r"--model"),
    _c("retrieval/model-without-arch", "evaluate-retrieval --tokenizer {w}/tok --interactions {w}/inter.parquet --model smollm2", r"arch"),
    # ---- sid-lm
    _c("sid-lm/tokenizer-missing", "sid-lm {w}/nope --out {w}/lm", _MISSING),
    _c("sid-lm/model-missing", "sid-lm {w}/tok --model {w}/nope --out {w}/lm", _MISSING),
    _c("sid-lm/model-not-hf", "sid-lm {w}/tok --model {w}/adir --out {w}/lm", r"not an HF model|config.json"),
    _c("sid-lm/out-exists", "sid-lm {w}/tok --model {w}/nope --out {w}/adir", r"exists|overwrite"),
    _c("sid-lm/init-bogus", "sid-lm {w}/tok --sid-init bogus --out {w}/lm", r"sid.init|mean|codebook"),
    _c("sid-lm/noise-negative", "sid-lm {w}/tok --init-noise -1 --out {w}/lm", r"init.noise"),
    # ---- pipeline / validate / presets
    _c("pipeline/dir", "pipeline {w}/adir", _DIR),
    _c("pipeline/missing", "pipeline {w}/nope.toml", _MISSING),
    _c("pipeline/nonutf8", "pipeline {w}/nonutf8.toml", _UTF8),
    _c("pipeline/broken-toml", "pipeline {w}/broken.toml", r"TOML|toml|parse|invalid"),
    _c("pipeline/bad-values", "pipeline {w}/pipe_bad.toml", r"steps.*codebook.size|codebook.size.*steps"),
    _c("pipeline/missing-catalog", "pipeline {w}/pipe_nocat.toml", r"catalog|nope"),
    _c("pipeline/unknown-table", "pipeline {w}/pipe_unknown.toml", r"bogus|unknown"),
    _c("pipeline/table-as-key", "pipeline {w}/pipe_baseline_key.toml", r"baseline = true: 'baseline' is a table"),
    _c("pipeline/json-list", "pipeline {w}/cfg_list.json", r"object|table|config"),
    _c("validate/bad-values", "validate {w}/pipe_bad.toml", r"steps.*codebook.size|codebook.size.*steps"),
    _c("validate/dir", "validate {w}/adir", _DIR),
    _c("validate/nonutf8", "validate {w}/nonutf8.toml", _UTF8),
    _c("validate/seed-abc", "validate {w}/pipe_seed.toml", r"seed"),
    _c("presets/unknown-stage", "presets bogus", r"bogus|stage"),
    # ---- usage errors (caught by the command line parser)
    _c("usage/unknown-verb", "bogus-verb", r"No such command"),
    _c("usage/unknown-option", "build-codebook {w}/emb.npy --out {w}/o1 --bogus", r"No such option"),
    _c("usage/missing-argument", "build-codebook --out {w}/o1", r"Missing argument"),
    _c("usage/missing-option", "build-codebook {w}/emb.npy", r"Missing option.*--out"),
    _c("usage/int-not-int", "build-codebook {w}/emb.npy --out {w}/o1 --seed abc", r"--seed"),
    _c("usage/float-not-float", "align --features {w}/feats --pairs {w}/pairs.parquet --out {w}/al1 --lr fast", r"--lr"),
    _c("usage/format-bogus", "lookup {w}/tok --item i0 --format xml", r"--format"),
    _c("usage/extra-argument", "index {w}/tok {w}/tok", r"unexpected extra argument|Got unexpected"),
    # ---- plan
    _c("plan/missing", "plan {w}/nope.npy", _MISSING),
    _c("plan/int-npy", "plan {w}/int.npy", r"int|integer|dtype|float"),
    _c("plan/nan-npy", "plan {w}/nan.npy --sample 300", r"row 7 contains NaN"),
    _c("plan/shapes-abc", "plan {w}/emb.npy --shapes abc", r"shape"),
    _c("plan/shapes-zero", "plan {w}/emb.npy --shapes 0x256", r"shape|level"),
    _c("plan/sample-zero", "plan {w}/emb.npy --sample 0", r"sample"),
    _c("plan/seed-negative", "plan {w}/emb.npy --seed -1", r"seed"),
    _c("plan/rate-out-of-range", "plan {w}/emb.npy --max-collision-rate 2", r"max.collision.rate"),
    _c("plan/ids-short", "plan {w}/emb.npy --ids {w}/ids_short.txt", r"ids? .*for|one id per row|item ids"),
]


# ------------------------------------------------------------------------------------ running
def snapshot(root: Path) -> dict[str, str]:
    """Every file and link under ``root``: relative path -> sha256 (or the link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "->" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


_LOG = re.compile(r"^(WARNING|INFO|DEBUG) ")


def judge(case: Case, exit_code: int, stderr: str, escaped: BaseException | None, changed: list[str]) -> tuple[str, str]:
    """(verdict, the message) of one run."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    msg_lines = [ln for ln in lines if not _LOG.match(ln)]
    msg = msg_lines[-1] if msg_lines else ""
    if escaped is not None or "Traceback (most recent call last)" in stderr or any(ln.strip() == "Aborted!" for ln in lines):
        return "traceback", (f"{type(escaped).__name__}: {escaped}" if escaped is not None else msg)[:300]
    if exit_code == 0:
        return "accepted", msg
    if changed:
        return "state changed", f"{msg} | changed: {changed[:4]}"
    if len(msg_lines) != 1 or not msg.startswith("error:") or not re.search(case.names, msg, re.I):
        return "unclear", " / ".join(msg_lines)[:400]
    return "clean", msg


def run_case(case: Case, ws: Path, pristine: Path, invoke: Callable) -> tuple[str, str]:
    """Run ``case`` against the workspace ``ws``; restore it from ``pristine`` if it changed."""
    before = snapshot(ws)
    argv = [a.replace("{w}", str(ws)) for a in case.argv]
    exit_code, stderr, escaped = invoke(argv)
    after = snapshot(ws)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if changed:
        shutil.rmtree(ws)
        shutil.copytree(pristine, ws, symlinks=True)
    return judge(case, exit_code, stderr, escaped, changed)


def cli_invoker(app) -> Callable:
    """Run the typer ``app`` in-process: (exit code, stderr, exception that escaped or None)."""
    from typer.testing import CliRunner

    runner = CliRunner()

    def invoke(argv):
        import logging

        # a log handler from an earlier in-process run writes to a closed stream: drop it
        root = logging.getLogger("tokenizer_kit")
        for h in [h for h in root.handlers if getattr(h, "_tokenizer_kit", False)]:
            root.removeHandler(h)
        env = {"TOKENIZER_KIT_LOCK_TIMEOUT": "2", "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
        r = runner.invoke(app, argv, env=env)
        escaped = r.exception if r.exception is not None and not isinstance(r.exception, SystemExit) else None
        stderr = r.stderr
        if escaped is not None:
            stderr += "".join(traceback.format_exception(*r.exc_info))
        return r.exit_code, stderr, escaped

    return invoke


# ------------------------------------------------------------------------------------ workspace
def _noise(n: int) -> bytes:
    """Fixed garbage bytes (the same corpus every run)."""
    return np.random.default_rng(n).bytes(n)


def _write_parquet(path: Path, cols: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(cols), path)


def _retamper(src: Path, dst: Path, edit: Callable[[Path, dict], None]) -> None:
    """Copy a tokenizer and change it, recomputing every checksum (a deliberate tamper)."""
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    edit(dst, m)
    try:
        from tokenizer_kit.io import sha256_file

        for name, entry in list(m.get("files", {}).items()):
            if (dst / name).is_file():
                if isinstance(entry, dict):
                    entry.update(sha256=sha256_file(dst / name), size=(dst / name).stat().st_size)
                else:
                    m["files"][name] = sha256_file(dst / name)
        from tokenizer_kit.io import seal

        m = seal(m)
    except ImportError:  # a checkout without sealed manifests
        pass
    (dst / "manifest.json").write_text(json.dumps(m))


def build_workspace(ws: Path, invoke: Callable) -> None:
    """Good inputs (built with the verbs themselves) and broken variants, under ``ws``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tokenizer_kit.io import make_clustered_embeddings

    ws.mkdir(parents=True, exist_ok=True)
    x = make_clustered_embeddings(400, 16, n_topics=8, n_sub=4, seed=5).astype(np.float32)
    ids = [f"i{k}" for k in range(300)]
    np.save(ws / "emb.npy", x[:300])
    (ws / "emb.ids.txt").write_text("\n".join(ids) + "\n")
    np.save(ws / "new.npy", x[300:350])
    (ws / "new.ids.txt").write_text("\n".join(f"n{k}" for k in range(50)) + "\n")
    np.save(ws / "emb_shifted.npy", x[:300] + 0.5)
    _write_parquet(ws / "new.parquet", {"item_id": [f"n{k}" for k in range(50)], "embedding": pa.array(list(x[300:350]), pa.list_(pa.float32(), 16))})
    _write_parquet(ws / "emb.parquet", {"item_id": ids, "embedding": pa.array(list(x[:300]), pa.list_(pa.float32(), 16))})

    def ok(argv):
        code, err, exc = invoke(argv)
        if code != 0 or exc is not None:
            raise RuntimeError(f"workspace step failed: {' '.join(argv)}: {err[-2000:]}")

    ok(["build-codebook", str(ws / "emb.npy"), "--ids", str(ws / "emb.ids.txt"), "--out", str(ws / "tok"), "--codebook-size", "8", "--levels", "3", "--seed", "0"])
    shutil.copytree(ws / "tok", ws / "def_tok")  # as the default build leaves it (before `index --embeddings`)
    raw = ["build-codebook", str(ws / "emb.npy"), "--ids", str(ws / "emb.ids.txt"), "--out", str(ws / "raw_tok"), "--codebook-size", "8", "--levels", "3", "--seed", "0"]
    if invoke(raw + ["--no-index"])[0] != 0:  # before build-codebook indexed by default
        ok(raw)
    ok(["index", str(ws / "tok"), "--embeddings", str(ws / "emb.npy"), "--ids", str(ws / "emb.ids.txt"), "--export-lcrec", str(ws / "tok.index.json")])

    # plain broken files
    (ws / "adir").mkdir()
    (ws / "afile").write_text("a file\n")
    (ws / "ckpt_badjson").mkdir()
    (ws / "ckpt_badjson" / "trainer_state.json").write_text("{broken")
    (ws / "ckpt_nonutf8").mkdir()
    (ws / "ckpt_nonutf8" / "trainer_state.json").write_bytes(b"\xff\xfe{}")
    for name in ("nonutf8.json", "nonutf8.txt", "nonutf8.toml", "nonutf8.item.json", "nonutf8.inter.json", "nonutf8.index.json"):
        (ws / name).write_bytes(b"\xff\xfe\x00bad\x81\n")
    (ws / "bad.json").write_text("{not json")
    (ws / "bad.inter.json").write_text("{not json")
    (ws / "bad.jsonl").write_text('{"item_id": "1", "title": "a"}\n{broken\n')
    (ws / "broken.toml").write_text("[codebook\nseed = \n")
    (ws / "garbage.npy").write_bytes(_noise(300))
    (ws / "garbage.parquet").write_bytes(b"PAR1" + _noise(200))
    (ws / "empty.npy").write_bytes(b"")
    (ws / "empty.parquet").write_bytes(b"")
    np.save(ws / "int.npy", (x[:300] * 100).astype(np.int64))
    np.save(ws / "bool.npy", x[:300] > 0)
    np.save(ws / "complex.npy", x[:300].astype(np.complex64))
    np.save(ws / "str.npy", np.array([["a"] * 16] * 300))
    np.save(ws / "obj.npy", np.array([[1, "a"]] * 300, dtype=object), allow_pickle=True)
    nan = x[:300].copy()
    nan[7, 3] = np.nan
    np.save(ws / "nan.npy", nan)
    inf = x[:300].copy()
    inf[9, 1] = np.inf
    np.save(ws / "inf.npy", inf)
    np.save(ws / "1d.npy", x[:300, 0])
    np.save(ws / "3d.npy", x[:300].reshape(300, 4, 4))
    np.save(ws / "zero_rows.npy", np.zeros((0, 16), np.float32))
    np.save(ws / "zero_dim.npy", np.zeros((300, 0), np.float32))
    np.save(ws / "few.npy", x[:3])
    np.save(ws / "dim8.npy", x[:50, :8])
    for name, n in (("nan", 300), ("inf", 300), ("few", 3), ("dim8", 50)):  # ids beside: the case is about the vectors
        (ws / f"{name}.ids.txt").write_text("\n".join(ids[:n]) + "\n")
    np.save(ws / "noids.npy", x[:300])
    (ws / "ids_short.txt").write_text("\n".join(ids[:10]) + "\n")
    (ws / "ids_dup.txt").write_text("\n".join(ids[:299] + ["i0"]) + "\n")
    (ws / "ids_dict.json").write_text(json.dumps({"a": 1}))
    (ws / "ids_blank.txt").write_text("\n".join(ids[:150] + ["   "] + ids[151:]) + "\n")
    vec = pa.list_(pa.float32())
    _write_parquet(ws / "null_id.parquet", {"item_id": [None] + ids[1:], "embedding": pa.array(list(x[:300]), vec)})
    _write_parquet(ws / "dup_id.parquet", {"item_id": ids[:299] + ["i0"], "embedding": pa.array(list(x[:300]), vec)})
    _write_parquet(ws / "ragged.parquet", {"item_id": ids, "embedding": pa.array([list(v) for v in x[:299]] + [list(x[299][:5])], vec)})
    _write_parquet(ws / "novec.parquet", {"item_id": ids, "title": ["t"] * 300})
    _write_parquet(ws / "strvec.parquet", {"item_id": ids, "embedding": ["0.1,0.2"] * 300})
    _write_parquet(ws / "nullvec.parquet", {"item_id": ids, "embedding": pa.array([None] + [list(v) for v in x[1:300]], vec)})
    _write_parquet(ws / "intvec.parquet", {"item_id": ids, "embedding": pa.array([[1] * 16] * 300, pa.list_(pa.int64()))})

    # catalogue and interactions
    cat = {"item_id": ids, "title": [f"item {k}" for k in range(300)], "description": ["d"] * 300,
           "brand": ["b"] * 300, "categories": [f"c{k % 5}, sub" for k in range(300)]}
    _write_parquet(ws / "catalog.parquet", cat)
    (ws / "catalog.item.json").write_text(json.dumps({i: {"title": f"item {i}"} for i in ids}))
    _write_parquet(ws / "cat_noid.parquet", {"title": ["t"] * 3})
    _write_parquet(ws / "cat_dup.parquet", {"item_id": ["a", "a"], "title": ["t", "u"]})
    _write_parquet(ws / "cat_empty.parquet", {"item_id": pa.array([], pa.string()), "title": pa.array([], pa.string())})
    _write_parquet(ws / "cat_null_id.parquet", {"item_id": ["a", None], "title": ["t", "u"]})
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(60):
        seq = rng.choice(300, size=8, replace=False)
        users += [f"u{u}"] * 8
        items += [ids[k] for k in seq]
        ts += list(range(8))
    _write_parquet(ws / "inter.parquet", {"user_id": users, "item_id": items, "timestamp": ts})
    _write_parquet(ws / "inter_one.parquet", {"user_id": ["u0"], "item_id": ["i0"], "timestamp": [0]})
    _write_parquet(ws / "inter_oneitem.parquet", {"user_id": ["u0", "u1", "u2"], "item_id": ["i0"] * 3, "timestamp": [0, 1, 2]})
    _write_parquet(ws / "inter_empty.parquet", {"user_id": pa.array([], pa.string()), "item_id": pa.array([], pa.string()), "timestamp": pa.array([], pa.int64())})
    _write_parquet(ws / "inter_nocol.parquet", {"item_id": ["i0"], "timestamp": [0]})
    _write_parquet(ws / "inter_nullid.parquet", {"user_id": ["u0", None, "u1"], "item_id": ["i0", "i1", None], "timestamp": [0, 1, 2]})
    _write_parquet(ws / "inter_text_ts.parquet", {"user_id": users, "item_id": items, "timestamp": ["a"] + [str(t) for t in ts[1:]]})
    _write_parquet(ws / "inter_unknown.parquet", {"user_id": [f"u{k // 5}" for k in range(50)], "item_id": [f"zz{k}" for k in range(50)], "timestamp": list(range(50))})
    (ws / "inter_notlist.inter.json").write_text(json.dumps({"u0": 5}))
    (ws / "emptyobj.inter.json").write_text("{}")

    # LC-Rec style indexes
    (ws / "big.index.json").write_text(json.dumps({"1": ["<a_99999999999999999999999>", "<b_1>"], "2": ["<a_1>", "<b_2>"]}))
    (ws / "order.index.json").write_text(json.dumps({"1": ["<b_1>", "<a_2>"], "2": ["<b_2>", "<a_1>"]}))
    (ws / "neg.index.json").write_text(json.dumps({"1": ["<a_-1>", "<b_1>"]}))
    (ws / "notlist.index.json").write_text(json.dumps({"1": 5}))
    (ws / "emptyobj.index.json").write_text("{}")
    (ws / "mixed.index.json").write_text(json.dumps({"1": ["<a_1>", "<b_1>"], "2": ["<a_1>"]}))
    (ws / "badtok.index.json").write_text(json.dumps({"1": ["<a_1>", "banana"]}))
    (ws / "dupkey.index.json").write_text('{"1": ["<a_1>", "<b_1>"], "1": ["<a_2>", "<b_2>"]}')

    # configs
    (ws / "cfg_list.json").write_text("[1, 2]")
    (ws / "cfg_niter.json").write_text(json.dumps({"niter": "abc"}))
    (ws / "cfg_unknown.json").write_text(json.dumps({"bogus": 1}))
    (ws / "cfg_seed.toml").write_text('seed = "abc"\n')
    head = f'workdir = "{ws}/pipe_out"\n'
    data = f'[data]\ncatalog = "{ws}/catalog.parquet"\ninteractions = "{ws}/inter.parquet"\n'
    (ws / "pipe_bad.toml").write_text(head + data + '[align]\nsteps = -5\n[codebook]\ncodebook_size = "abc"\n')
    (ws / "pipe_seed.toml").write_text(head + 'seed = "abc"\n' + data)
    (ws / "pipe_nocat.toml").write_text(head + f'[data]\ncatalog = "{ws}/nope.parquet"\ninteractions = "{ws}/inter.parquet"\n')
    (ws / "pipe_unknown.toml").write_text(head + data + "[bogus]\na = 1\n")
    (ws / "pipe_baseline_key.toml").write_text(head + "baseline = true\n" + data)

    # tokenizers tampered with (checksums recomputed, manifest resealed)
    tok = ws / "tok"

    def code999(d, m):
        t = pq.read_table(d / "sids.parquet")
        c = t.column("code_1").to_pylist()
        c[3] = 999
        pq.write_table(t.set_column(t.column_names.index("code_1"), "code_1", pa.array(c, t.column("code_1").type)), d / "sids.parquet")

    def dup_rows(d, m):
        t = pq.read_table(d / "sids.parquet")
        i = t.column("item_id").to_pylist()
        i[5] = i[4]
        pq.write_table(t.set_column(0, "item_id", pa.array(i, t.column("item_id").type)), d / "sids.parquet")

    def null_ids(d, m):
        t = pq.read_table(d / "sids.parquet")
        i = t.column("item_id").to_pylist()
        i[2] = None
        pq.write_table(t.set_column(0, "item_id", pa.array(i, t.column("item_id").type)), d / "sids.parquet")

    def nan_codebook(d, m):
        from safetensors.numpy import load_file, save_file

        w = load_file(str(d / "quantizer.safetensors"))
        w["codebook_1"] = w["codebook_1"].copy()
        w["codebook_1"][2, 0] = np.nan
        save_file(w, str(d / "quantizer.safetensors"))

    def dotdot(d, m):
        (d.parent / "outside.bin").write_bytes(b"outside")
        from tokenizer_kit.io import sha256_file

        m["files"]["../outside.bin"] = {"sha256": sha256_file(d.parent / "outside.bin"), "size": 7}

    def symlink(d, m):
        shutil.move(d / "sids.parquet", d.parent / "outside_sids.parquet")
        (d / "sids.parquet").symlink_to(d.parent / "outside_sids.parquet")

    def bad_trie(d, m):
        from safetensors.numpy import load_file, save_file

        w = load_file(str(d / "trie.safetensors"))
        k = sorted(w)[0]
        w[k] = w[k][: max(0, len(w[k]) - 3)].copy()
        save_file(w, str(d / "trie.safetensors"))

    def int_codebook(d, m):
        from safetensors.numpy import load_file, save_file

        w = load_file(str(d / "quantizer.safetensors"))
        w["codebook_1"] = (w["codebook_1"] * 100).astype(np.int64)
        save_file(w, str(d / "quantizer.safetensors"))

    def hash_float(d, m):
        from safetensors.numpy import load_file, save_file

        w = load_file(str(d / "index.safetensors"))
        w["emb_hash"] = w["emb_hash"].astype(np.float64)
        save_file(w, str(d / "index.safetensors"))

    edits = {
        "t_index_version": lambda d, m: m["sections"]["index"].update(version="abc"),
        "t_int_codebook": int_codebook,
        "t_hash_float": hash_float,
        "t_no_method": lambda d, m: m.pop("method"),
        "t_config_list": lambda d, m: m.update(config=[1, 2]),
        "t_niter_abc": lambda d, m: m["config"].update(niter="abc"),
        "t_files_empty": lambda d, m: m.update(files={}),
        "t_dotdot": dotdot,
        "t_nan": nan_codebook,
        "t_code999": code999,
        "t_dup_rows": dup_rows,
        "t_null_ids": null_ids,
        "t_newer": lambda d, m: m.update(format_version=99),
        "t_sizes_str": lambda d, m: m.update(codebook_sizes=["8", "8", "8"]),
        "t_garbage_weights": lambda d, m: (d / "quantizer.safetensors").write_bytes(_noise(64)),
        "t_garbage_sids": lambda d, m: (d / "sids.parquet").write_bytes(b"PAR1" + _noise(64)),
        "t_symlink": symlink,
        "t_bad_trie": bad_trie,
    }
    for name, edit in edits.items():
        _retamper(tok, ws / name, edit)
    shutil.copytree(tok, ws / "t_corrupt")
    (ws / "t_corrupt" / "manifest.json").write_text("{broken")
    shutil.copytree(tok, ws / "t_nonutf8")
    (ws / "t_nonutf8" / "manifest.json").write_bytes(b"\xff\xfe{}")
    shutil.copytree(tok, ws / "t_no_weights")
    (ws / "t_no_weights" / "quantizer.safetensors").unlink()
    shutil.copytree(tok, ws / "t_tampered")  # changed without recomputing checksums
    data = bytearray((ws / "t_tampered" / "sids.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (ws / "t_tampered" / "sids.parquet").write_bytes(bytes(data))
    shutil.copytree(tok, ws / "t_edited")
    m = json.loads((ws / "t_edited" / "manifest.json").read_text())
    m["n_items"] = 5
    (ws / "t_edited" / "manifest.json").write_text(json.dumps(m))

    # feature store, pairs, alignment
    from tokenizer_kit.features import write_feature_store

    frng = np.random.default_rng(1)
    toks = [frng.normal(size=(3 + k % 4, 8)).astype(np.float16) for k in range(300)]
    write_feature_store(ws / "feats", ids, toks, config={"backend": "arrays"}, shard_size=128)
    write_feature_store(ws / "feats_dim4", ids, [t[:, :4] for t in toks], config={"backend": "arrays"}, shard_size=128)
    shutil.copytree(ws / "feats", ws / "feats_corrupt")
    victim = sorted((ws / "feats_corrupt").rglob("*tokens.npy"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    shutil.copytree(ws / "feats", ws / "feats_nonutf8")
    (ws / "feats_nonutf8" / "manifest.json").write_bytes(b"\xff\xfe{}")
    a = rng.integers(0, 300, 400)
    b = (a + rng.integers(1, 5, 400)) % 300
    _write_parquet(ws / "pairs.parquet", {"item_a": [ids[k] for k in a], "item_b": [ids[k] for k in b], "score": [1.0] * 400, "source": ["swing"] * 400})
    _write_parquet(ws / "pairs_unknown.parquet", {"item_a": ["zz1", "zz2"], "item_b": ["zz3", "zz4"], "score": [1.0, 1.0], "source": ["swing"] * 2})
    small = _SMALL_ALIGN.split()
    ok(["align", "--features", str(ws / "feats"), "--pairs", str(ws / "pairs.parquet"), "--out", str(ws / "align"), "--steps", "2", *small])
    for name in ("al_pickle", "al_corrupt_ckpt"):
        shutil.copytree(ws / "align", ws / name)
    import pickle

    class _Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    (ws / "al_pickle" / "checkpoint" / "trainer_state.pt").write_bytes(pickle.dumps({"step": _Evil()}))
    (ws / "al_corrupt_ckpt" / "checkpoint" / "trainer_state.pt").write_bytes(_noise(100))
    shutil.copytree(ws / "align", ws / "al_newer")
    mm = json.loads((ws / "al_newer" / "manifest.json").read_text())
    mm["format_version"] = 99
    try:
        from tokenizer_kit.io import seal

        mm = seal(mm)
    except ImportError:
        pass
    (ws / "al_newer" / "manifest.json").write_text(json.dumps(mm))
    shutil.copytree(ws / "align", ws / "al_garbage")
    (ws / "al_garbage" / "model.safetensors").write_bytes(_noise(64))
    shutil.copytree(ws / "align", ws / "al_nonutf8")
    (ws / "al_nonutf8" / "manifest.json").write_bytes(b"\xff\xfe{}")
