"""Metrics and reports: reconstruction, utilization, entropy, collisions, category NMI."""

from ..build import (
    category_nmi,
    collision_stats,
    level_stats,
    prefix_fanout,
    reconstruction_stats,
    tokenizer_metrics,
)
from ._compare import comparison_cells
from ._html import render_html
from ._report import build_report, read_index_json, report_target

__all__ = [
    "build_report",
    "comparison_cells",
    "read_index_json",
    "render_html",
    "report_target",
    "category_nmi",
    "collision_stats",
    "level_stats",
    "prefix_fanout",
    "reconstruction_stats",
    "tokenizer_metrics",
]
