"""The alignment directory as an artifact: its kinds, its result file, and whether it is complete.

Layout of an alignment directory (``ALIGNMENT``, written by ``train_alignment``)::

    manifest.json         the manifest: format and package version, AlignConfig, inputs, the
                          training summary, checksums; written last, switched in atomically
                          (``config.json`` in directories written before it)
    model.safetensors     trainable weights: qformer.*, caption_proj.* (if any), temperature.*
    eval.json             the held-out evaluation (recall@k aligned vs raw pooled, caption
                          loss): a result, kept out of the manifest (older directories hold it
                          in the manifest's ``summary.eval``)
    metrics.jsonl         one JSON line per logged step (and the final eval); not checksummed
    checkpoint/           the resume state (``CHECKPOINT``): model.safetensors and
                          trainer_state.pt (optimizer, scheduler, step, RNG) under their own
                          manifest (a ``meta.json`` record in checkpoints written before it)

This module imports no torch: the pipeline asks it whether an alignment is complete and
reads its evaluation without loading a model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, InputError
from ..io import ArtifactKind, read_json, read_manifest

__all__ = ["ALIGNMENT", "CHECKPOINT", "CHECKPOINT_DIR", "EVAL_NAME", "is_alignment_complete", "has_checkpoint", "read_checkpoint_record", "read_alignment_eval"]

EVAL_NAME = "eval.json"
CHECKPOINT_DIR = "checkpoint"
_LEGACY_CHECKPOINT_RECORD = "meta.json"

ALIGNMENT = ArtifactKind(
    name="alignment",
    legacy_manifest_names=("config.json",),
    # 1: "tokenizer_kit_version" and "weights_sha256"; 2: envelope + sealed manifest
    format_version=2,
    sealed_since=2,
    what="alignment directory",
    fix="re-run `tokenizer-kit align`",
    required=lambda fv, data: {"model.safetensors"},
    owned=lambda name: name in ("model.safetensors", EVAL_NAME),
    keep=("metrics.jsonl", CHECKPOINT_DIR),
    legacy_files=lambda fv, data: {"model.safetensors": data.get("weights_sha256") if isinstance(data.get("weights_sha256"), str) else None},
)
CHECKPOINT = ArtifactKind(
    name="alignment-checkpoint",
    format_version=1,
    sealed_since=1,
    what="alignment checkpoint",
    fix="delete it to start over, or choose another `out`",
    required=lambda fv, data: {"model.safetensors", "trainer_state.pt"},
    # presence only when read: the loader checks each file itself (strict safetensors, torch.load
    # with weights_only) and says what is wrong with it, code in a pickle included
    verify="none",
)


def has_checkpoint(out: str | os.PathLike) -> bool:
    """Whether the alignment directory ``out`` holds resume state (a run in progress, or one
    that stopped before its last step)."""
    d = Path(out) / CHECKPOINT_DIR
    return CHECKPOINT.committed(d) or (d / _LEGACY_CHECKPOINT_RECORD).is_file()


def is_alignment_complete(out: str | os.PathLike) -> bool:
    """Whether ``out`` holds a finished alignment: a committed one with no resume state beside
    it (a run that is resuming there, or was stopped, leaves ``checkpoint/``)."""
    return ALIGNMENT.committed(out) and not (Path(out) / CHECKPOINT_DIR).exists()


def read_checkpoint_record(out: str | os.PathLike) -> dict[str, Any]:
    """The record of the checkpoint in ``out`` (``step``, ``config``, ``package_version``);
    ``ArtifactError`` when it is missing or unreadable."""
    d = Path(out) / CHECKPOINT_DIR
    fix = f"delete {d} to start over, or choose another `out`"
    try:
        if CHECKPOINT.committed(d):
            meta = read_manifest(d, CHECKPOINT).data
        else:
            meta = read_json(d / _LEGACY_CHECKPOINT_RECORD, "checkpoint record")
        meta = dict(meta)
        meta["config"] = dict(meta["config"])
    except (ArtifactError, InputError, KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{d}: the checkpoint record is unreadable ({e}); {fix}") from None
    return meta


def read_alignment_eval(out: str | os.PathLike) -> dict[str, Any] | None:
    """The held-out evaluation of the alignment at ``out``: its ``eval.json``, or the manifest's
    ``summary.eval`` in a directory written before it; None when it holds none."""
    m = read_manifest(out, ALIGNMENT, verify="none")
    if EVAL_NAME in m.files:
        ev = read_json(m.file(EVAL_NAME), "alignment evaluation")
        return ev if isinstance(ev, dict) else None
    summary = m.get("summary")
    return summary.get("eval") if isinstance(summary, dict) else None
