"""End-to-end pipeline: config, stage bookkeeping (skip / resume). The stages are the CLI verbs."""

from ._config import STAGES, PipelineConfig, load_pipeline_config
from ._runner import StageOutcome, StageRunner, config_hash

__all__ = ["STAGES", "PipelineConfig", "StageOutcome", "StageRunner", "config_hash", "load_pipeline_config"]
