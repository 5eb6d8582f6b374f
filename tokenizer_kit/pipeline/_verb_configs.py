"""Settings of the verbs that run without torch (index, lookup, report, assign, ...).

Kept apart from the stage configs that import the alignment and companion packages, so the
CLI's quick verbs build their options without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .._config import ValidatedConfig, setting
from ..engines import EngineConfig
from ..indexer import IndexConfig
from ..io import EmbeddingSource

__all__ = ["AssignConfig", "CategoriesInput", "EmbeddingsInput", "ImportIndexConfig", "IndexStageConfig", "LookupConfig", "ReportConfig",
           "TextEmbedConfig"]


@dataclass
class EmbeddingsInput(ValidatedConfig):
    """Which columns of an embeddings file hold the ids and the vectors."""

    label: ClassVar[str] = "embeddings input"

    id_column: str = setting("item_id", help="Item id column (Parquet / datasets); ids keep their type (int or string).")
    vector_column: str | None = setting(None, help="Vector column (Parquet / datasets); guessed if omitted.")
    split: str | None = setting(None, help="Split of a saved DatasetDict (default: train, else the first).")
    row_ids: bool = setting(False, help="Input without ids (no id column, no ids file): number the rows 0..n-1 instead of "
                            "failing (such ids will not join with the catalogue).")

    def open_kw(self) -> dict:
        """Keyword arguments of ``io.open_embeddings`` / ``io.load_embeddings``."""
        return {"id_column": self.id_column, "vector_column": self.vector_column, "split": self.split, "row_ids": self.row_ids}

    def source(self, path, ids_path=None) -> EmbeddingSource:
        """The embeddings at ``path`` (ids from ``ids_path`` when given) read with these columns."""
        return EmbeddingSource(path, ids_path=ids_path, **self.open_kw())


@dataclass
class CategoriesInput(ValidatedConfig):
    """Where a catalogue keeps each item's categories (for the level-1 NMI metric)."""

    label: ClassVar[str] = "categories"

    category_column: str = setting("categories", help="Catalogue column holding each item's categories.")


@dataclass
class IndexStageConfig(IndexConfig):
    label: ClassVar[str] = "index"

    vocab_base: int = setting(0, help="First token id of the SID vocabulary (e.g. the LLM's vocab size).", bounds=(0, None))


@dataclass
class ImportIndexConfig(IndexConfig):
    label: ClassVar[str] = "import-index"

    levels: int | None = setting(None, help="Leading SID levels taken as codes (default: all; a tool's own disambiguation level "
                                 "can be dropped and resolved again by the policy).", bounds=(1, None))
    codebook_sizes: list[int] | None = setting(None, help="Codes per level (default: largest imported code + 1); leave room for "
                                               "new items' codes.", bounds=(1, None), aliases=("codebook_size",))


@dataclass
class ReportConfig(CategoriesInput):
    label: ClassVar[str] = "report"

    codebook_sizes: list[int] | None = setting(None, help="Codebook sizes of *.index.json inputs (default: largest code + 1 per level).",
                                               aliases=("codebook_size",))
    sid_levels: int | None = setting(None, help="How many levels of *.index.json inputs are SID levels (default: detected; a last "
                                     "level that only numbers the items of each prefix is left out of the collisions).", bounds=(1, None))


@dataclass
class TextEmbedConfig(ValidatedConfig):
    label: ClassVar[str] = "embed-text"

    fields: tuple[str, ...] = setting(("title", "description", "brand", "categories"), help="Text fields joined per item.", nonempty=True)
    model: str | None = setting(None, help="Local transformers encoder directory (default: offline all-MiniLM-L6-v2).")
    batch_size: int = setting(64, help="Items per forward batch.", bounds=(1, None))
    max_length: int = setting(256, help="Tokens per item text.", bounds=(8, None))
    normalize: bool = setting(True, help="L2-normalise the mean-pooled vectors.")
    device: str = setting("cpu", help="cpu or cuda.")
    shard_size: int = setting(8192, help="Items per shard: texts are length-sorted within shards of this many items (on either engine, "
                              "so both give the same vectors); with the ray engine, one output part each.", bounds=(1, None))
    execution: EngineConfig = field(default_factory=EngineConfig)

    flatten: ClassVar[tuple[str, ...]] = ("execution",)

    def errors(self) -> list[str]:
        return self.execution.errors()


@dataclass
class AssignConfig(ValidatedConfig):
    label: ClassVar[str] = "assign"

    flatten: ClassVar[tuple[str, ...]] = ("execution",)

    # not "replace": that would hide ValidatedConfig.replace(); --replace stays a flag (an alias)
    replace_changed: bool = setting(False, help="A known item with a different embedding gets a new SID; its old SID is retired.",
                                    aliases=("replace",))
    batch_size: int | None = setting(None, help="Items per encoding batch (default: the quantizer's).", bounds=(1, None))
    show: int = setting(10, help="Lookup rows printed (table format; JSON lists every row).", bounds=(0, None))
    shard_size: int = setting(1 << 20, help="Items per output shard with the ray engine (rounded to whole batches; the resume unit).",
                              bounds=(1, None))
    execution: EngineConfig = field(default_factory=EngineConfig)

    def errors(self) -> list[str]:
        return self.execution.errors()


@dataclass
class LookupConfig(ValidatedConfig):
    label: ClassVar[str] = "lookup"

    limit: int = setting(20, help="Items listed under a prefix.", bounds=(0, None))
