"""The library's pipeline: ``run(config)`` runs extract -> mine-pairs -> align -> embed ->
build-codebook -> index -> report (-> evaluate-retrieval) by calling library functions with
each stage's typed config, skipping stages already done and resuming killed ones.

``load_config`` validates a whole config (TOML / JSON / dict / :class:`PipelineConfig`) before
any compute; ``stages`` holds the one function per stage that the CLI verbs call too.
Importing this package is cheap: the stages (and torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .._config import list_presets, load_preset
from ._verb_configs import (
    AssignConfig,
    CategoriesInput,
    EmbeddingsInput,
    ImportIndexConfig,
    IndexStageConfig,
    LookupConfig,
    ReportConfig,
    TextEmbedConfig,
)

__all__ = [
    "STAGES",
    "AlignStageConfig",
    "AssignConfig",
    "CategoriesInput",
    "CodebookConfig",
    "EmbedConfig",
    "EmbeddingsInput",
    "ExtractStageConfig",
    "ImportIndexConfig",
    "IndexStageConfig",
    "LookupConfig",
    "MinePairsConfig",
    "PipelineConfig",
    "ReportConfig",
    "RetrievalStageConfig",
    "StageOutcome",
    "StageRunner",
    "TextEmbedConfig",
    "config_hash",
    "list_presets",
    "load_config",
    "load_preset",
    "run",
    "stage_config",
    "stages",
]

_LAZY = {
    "AlignStageConfig": "._stage_configs",
    "CodebookConfig": "._stage_configs",
    "EmbedConfig": "._stage_configs",
    "ExtractStageConfig": "._stage_configs",
    "MinePairsConfig": "._stage_configs",
    "RetrievalStageConfig": "._stage_configs",
    "STAGES": "._config",
    "PipelineConfig": "._config",
    "load_config": "._config",
    "stage_config": "._config",
    "StageOutcome": "._runner",
    "StageRunner": "._runner",
    "config_hash": "._runner",
    "run": "._run",
}


def __getattr__(name: str) -> Any:
    if name == "stages":
        return importlib.import_module("._stages", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
