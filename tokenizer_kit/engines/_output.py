"""A directory of Parquet shards with a manifest written last: the output of a sharded job.

Layout::

    part-00000.parquet     the rows of shard 0, in input order (schema metadata key
    part-00001.parquet     ``tokenizer_kit_shard``: the job and shard fingerprints)
    ...
    _manifest.json         written last and atomically (``io.update_artifact``): the job,
                           its settings and fingerprint, every shard's rows and checksum

Any Parquet reader reads the directory as one dataset: pyarrow, Spark and Ray skip names
that start with ``_`` or ``.``, and so does ``io.open_embeddings``. A directory without a manifest is
unfinished: a rerun of the same job keeps every part whose fingerprint matches (same input
rows, same tokenizer or model checksum, same settings) and redoes the rest. A part is
written to a temporary name and renamed, so a kill never leaves half a part under a part's
name. The driver holds the directory's writer lock for the whole run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..errors import ArtifactError
from ..io import ArtifactKind, atomic_write, read_manifest, sha256_file
from ._plan import Shard

__all__ = ["SHARDS", "SHARD_META_KEY", "PartWriter", "part_writer", "part_key", "read_shard_manifest", "shard_files"]

logger = logging.getLogger(__name__)

SHARD_META_KEY = b"tokenizer_kit_shard"


def _required(fv: int, data: Mapping[str, Any]) -> set[str]:
    shards = data.get("shards")
    if not isinstance(shards, list):
        return set()
    return {s["file"] for s in shards if isinstance(s, Mapping) and isinstance(s.get("file"), str)}


SHARDS = ArtifactKind(
    name="shards",
    # not io.MANIFEST_NAME: the directory is a Parquet dataset, and Parquet readers (pyarrow,
    # Spark, Ray) skip names that start with "_", so the manifest must start with one
    manifest_name="_manifest.json",
    format_version=1,
    sealed_since=1,
    what="shard directory",
    fix="run the job again (it keeps the shards already written and redoes the rest)",
    required=_required,
    verify="size",
    owned=lambda name: name.startswith("part-"),
)


class PartWriter:
    """Appends Arrow tables to one part file (a temporary name until the block ends)."""

    def __init__(self, tmp: Path, meta: bytes):
        self.tmp = tmp
        self.meta = meta
        self.rows = 0
        self._w = None

    def write(self, table, *, row_group_size: int | None = None) -> None:
        import pyarrow.parquet as pq

        if self._w is None:
            md = dict(table.schema.metadata or {})
            md[SHARD_META_KEY] = self.meta
            self._w = pq.ParquetWriter(str(self.tmp), table.schema.with_metadata(md))
        self._w.write_table(table.replace_schema_metadata(self._w.schema.metadata), row_group_size=row_group_size)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None


@contextlib.contextmanager
def part_writer(directory: str | os.PathLike, shard: Shard, job_key: str, *, empty_schema=None) -> Iterator[PartWriter]:
    """Write ``part-XXXXX.parquet`` of ``shard`` in ``directory`` atomically; ``info`` (rows,
    sha256, size) is set on the writer when the block ends. ``empty_schema``: the schema of
    a shard whose rows all went elsewhere (nothing written)."""
    import pyarrow as pa

    meta = json.dumps({"job": job_key, "shard": shard.key(job_key), "rows": shard.rows}).encode()
    path = Path(directory) / f"{shard.name}.parquet"
    with atomic_write(path) as tmp:
        w = PartWriter(Path(tmp), meta)
        try:
            yield w
            if w._w is None and empty_schema is not None:
                w.write(pa.table({f.name: pa.array([], f.type) for f in empty_schema}, schema=empty_schema))
        finally:
            w.close()
    w.info = {"index": shard.index, "name": shard.name, "file": path.name, "rows": w.rows, "first_row": shard.first_row, "input_rows": shard.rows,
              "sha256": sha256_file(path), "size": path.stat().st_size}


def part_key(path: Path) -> str | None:
    """The shard fingerprint a part file was written with (None: unreadable or foreign)."""
    import pyarrow.parquet as pq

    try:
        md = pq.read_schema(str(path)).metadata or {}
        return json.loads(md[SHARD_META_KEY]).get("shard")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass
class ShardManifest:
    path: Path
    data: dict[str, Any]

    @property
    def shards(self) -> list[dict[str, Any]]:
        return list(self.data.get("shards", []))

    def files(self) -> list[Path]:
        return [self.path / s["file"] for s in self.shards]


def read_shard_manifest(path: str | os.PathLike, *, verify: Any = "size") -> ShardManifest:
    """A finished shard directory's manifest (``ArtifactError`` if unfinished or damaged)."""
    p = Path(path)
    if not (p / SHARDS.manifest_name).exists():
        raise ArtifactError(f"{p} has no {SHARDS.manifest_name}: the sharded job that writes it has not finished; {SHARDS.fix}")
    m = read_manifest(p, SHARDS, verify=verify)
    return ShardManifest(p, dict(m.data))


def shard_files(path: str | os.PathLike) -> list[Path]:
    """The part files of a finished shard directory, in input order."""
    return read_shard_manifest(path).files()


def stray_parts(directory: Path, keep: Sequence[str]) -> list[Path]:
    """Part files in ``directory`` that the current plan does not name (a plan of another size)."""
    names = set(keep)
    return [p for p in directory.glob("part-*.parquet") if p.name not in names]
