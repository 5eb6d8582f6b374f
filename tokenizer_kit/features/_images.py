"""Image fields: decode paths or bytes (one or many per item) in DataLoader workers.

An image cell may be a path (absolute, or relative to the catalogue's directory), raw
bytes, a ``{"bytes": ..., "path": ...}`` dict (the HF ``Image`` feature), a list of any of
these, or a JSON list in a string. A cell that is None or empty is a missing field (not an
error); an image that cannot be read or decoded is an error recorded for its item.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["image_sources", "load_image", "ImageItems"]

logger = logging.getLogger(__name__)


def image_sources(cell: Any) -> list[Any]:
    """Normalise one image cell into a list of sources (str path, bytes or dict)."""
    if cell is None:
        return []
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return [bytes(cell)] if len(cell) else []
    if isinstance(cell, dict):
        return [cell] if (cell.get("bytes") or cell.get("path")) else []
    if isinstance(cell, str):
        s = cell.strip()
        if not s:
            return []
        if s.startswith("["):
            try:
                parsed = json.loads(s)
            except json.JSONDecodeError:
                return [s]
            return image_sources(parsed)
        return [s]
    if isinstance(cell, (list, tuple)):
        out: list[Any] = []
        for c in cell:
            out.extend(image_sources(c))
        return out
    return [cell]


def load_image(source: Any, base_dir: Path | None = None):
    """Decode one source into an RGB ``PIL.Image``; raises ``OSError``/``ValueError`` on failure."""
    from PIL import Image

    if isinstance(source, dict):
        source = source.get("bytes") or source.get("path")
    if isinstance(source, (bytes, bytearray)):
        img = Image.open(io.BytesIO(source))
    elif isinstance(source, str):
        p = Path(source)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        img = Image.open(p)
    else:
        raise ValueError(f"unsupported image value of type {type(source).__name__}")
    img.load()  # decode now so a truncated file fails here, not in the transform
    return img.convert("RGB")


def _describe(source: Any) -> str:
    if isinstance(source, dict):
        return str(source.get("path") or f"<{len(source.get('bytes') or b'')} bytes>")
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return str(source)


class ImageItems:
    """Map-style dataset over items: item ``k`` -> ``(k, images, errors)``.

    ``images`` is a list of ``(field, index, tensor (3, H, W))``; ``errors`` a list of
    ``{"field", "index", "source", "error"}`` for images that failed to load.
    """

    def __init__(self, cells: Sequence[dict[str, Any]], *, fields: Sequence[str], transform: Callable, base_dir: Path | None):
        self.cells = list(cells)
        self.fields = list(fields)
        self.transform = transform
        self.base_dir = base_dir

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, k: int):
        images, errors = [], []
        for f in self.fields:
            for j, src in enumerate(image_sources(self.cells[k].get(f))):
                try:
                    images.append((f, j, self.transform(load_image(src, self.base_dir))))
                except Exception as e:  # any decoder failure is a per-item record, not a crash
                    errors.append({"field": f, "index": j, "source": _describe(src)[:200], "error": f"{type(e).__name__}: {e}"[:300]})
        return k, images, errors


def collate_items(batch):
    return batch
