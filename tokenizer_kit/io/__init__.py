"""Inputs and artifact files: embeddings, catalogues, interactions and their leave-one-out split, atomic writes."""

from ._atomic import (
    atomic_directory,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    replace_directory,
    sha256_file,
)
from ._embeddings import (
    Embeddings,
    load_embeddings,
    read_ids_file,
    validate_ids,
    validate_vectors,
    write_embeddings_parquet,
)
from ._sids import sids_table, write_sids_parquet
from ._splits import TEST, TRAIN, VALID, InteractionLog, Split, interaction_log, leave_one_out_roles, leave_one_out_split
from ._synthetic import make_clustered_embeddings
from ._tables import (
    item_categories,
    read_catalog,
    read_interactions,
    read_lcrec_interactions,
    read_lcrec_items,
    top_category,
)

__all__ = [
    "Embeddings",
    "InteractionLog",
    "Split",
    "TEST",
    "TRAIN",
    "VALID",
    "atomic_directory",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "interaction_log",
    "item_categories",
    "leave_one_out_roles",
    "leave_one_out_split",
    "load_embeddings",
    "make_clustered_embeddings",
    "read_catalog",
    "read_ids_file",
    "read_interactions",
    "read_lcrec_interactions",
    "read_lcrec_items",
    "replace_directory",
    "sha256_file",
    "sids_table",
    "top_category",
    "validate_ids",
    "validate_vectors",
    "write_embeddings_parquet",
    "write_sids_parquet",
]
