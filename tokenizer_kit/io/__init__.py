"""Inputs and artifact files: embeddings, catalogues, interactions, atomic writes."""

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
    "atomic_directory",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "item_categories",
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
