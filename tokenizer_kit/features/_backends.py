"""Encoders that turn texts and images into token vectors: open_clip and transformers.

Both backends speak the same small protocol:

- ``dim``: width of the token vectors they return;
- ``describe()``: what the manifest records about the model (name, weights, dims);
- ``image_transform``: a picklable ``PIL.Image -> (3, H, W) tensor`` run in DataLoader
  workers (None for text-only encoders);
- ``encode_texts(texts) -> list of (T_i, dim) float32 arrays`` (padding dropped);
- ``encode_images(pixels (n, 3, H, W)) -> (n, P, dim) float32`` (CLS first, then patches).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, TokenizerKitError

__all__ = ["OpenCLIPBackend", "HFBackend", "build_backend"]

logger = logging.getLogger(__name__)


def _pool_patches(x, grid: int | None):
    """(n, 1 + g*g, d) -> (n, 1 + grid*grid, d): average-pool the patch grid, keep CLS."""
    if grid is None:
        return x
    import torch
    import torch.nn.functional as F

    n, t, d = x.shape
    g = int(round((t - 1) ** 0.5))
    if g * g != t - 1 or grid >= g:
        return x
    patches = x[:, 1:].transpose(1, 2).reshape(n, d, g, g)  # [n, d, g, g]
    pooled = F.adaptive_avg_pool2d(patches, grid).reshape(n, d, grid * grid).transpose(1, 2)
    return torch.cat([x[:, :1], pooled], dim=1)


class OpenCLIPBackend:
    """open_clip CLIP model: text token states and image CLS + patch tokens, both projected
    into the joint embedding space (``embed_dim``).

    ``model`` is an open_clip model name (``open_clip.list_models()``) or a path to a model
    config JSON (``embed_dim``, ``vision_cfg``, ``text_cfg``). ``pretrained`` is a local
    checkpoint or a tag (downloaded only where the machine can); ``random_init`` builds the
    architecture with seeded random weights (tests, benchmarks).
    """

    def __init__(self, *, model: str, pretrained: str | None, random_init: bool, image_pool: int | None, device: str, seed: int):
        import open_clip
        import torch

        name = model
        if model.endswith(".json"):
            p = Path(model)
            if not p.is_file():
                raise InputError(f"open_clip model config {p} does not exist; pass a model name or an existing config JSON")
            open_clip.add_model_config(p)
            name = p.stem
        if name not in open_clip.list_models():
            raise InputError(
                f"unknown open_clip model {model!r}; pass one of open_clip.list_models() (e.g. ViT-B-32) or a config JSON"
            )
        torch.manual_seed(seed)
        try:
            clip, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=None if random_init else pretrained, device=device
            )
        except Exception as e:  # hub, file and format errors alike: the user fixes `pretrained`
            msg = " ".join(str(e).split())[:200]
            raise TokenizerKitError(
                f"could not load open_clip {name} weights {pretrained!r} ({msg}); pass a local checkpoint file "
                "as `pretrained`, or set `random_init` for a test run"
            ) from None
        clip.eval()
        visual = clip.visual
        if not all(hasattr(visual, a) for a in ("_embeds", "transformer", "ln_post", "proj")) or getattr(visual, "attn_pool", None) is not None:
            raise InputError(f"open_clip model {name}: only ViT image towers without attention pooling are supported")
        if hasattr(clip, "text") and not hasattr(clip.text, "_embeds"):
            raise InputError(f"open_clip model {name}: HF or timm text towers are not supported; set `backend` to hf")
        self.name = name
        self.model = clip
        self.tokenizer = open_clip.get_tokenizer(name)
        self.image_transform = preprocess
        self.device = device
        self.image_pool = image_pool
        self.random_init = random_init
        self.pretrained = pretrained
        proj = visual.proj
        self.dim = int(proj.shape[1]) if proj is not None else int(visual.transformer.width)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "weights": "random-init" if self.random_init else self.pretrained, "dim": self.dim}

    def encode_images(self, pixels) -> np.ndarray:
        import torch

        v = self.model.visual
        with torch.inference_mode():
            x = v._embeds(pixels.to(self.device))  # [n, 1+P, width]
            x = v.transformer(x)
            x = v.ln_post(x)
            if v.proj is not None:
                x = x @ v.proj  # [n, 1+P, embed_dim]: CLS row equals encode_image() for pool_type 'tok'
            x = _pool_patches(x, self.image_pool)
        return x.float().cpu().numpy()

    def encode_texts(self, texts: Sequence[str], max_tokens: int) -> list[np.ndarray]:
        import torch

        m = self.model
        ids = self.tokenizer(list(texts)).to(self.device)  # [n, ctx]
        with torch.inference_mode():
            if hasattr(m, "text"):  # CustomTextCLIP
                t = m.text
                x, attn_mask = t._embeds(ids)
                x = t.transformer(x, attn_mask=attn_mask)
                x = t.ln_final(x)
                proj = t.text_projection
            else:
                x = m.token_embedding(ids)  # [n, ctx, width]
                x = x + m.positional_embedding.to(x.dtype)
                x = m.transformer(x, attn_mask=m.attn_mask)
                x = m.ln_final(x)
                proj = m.text_projection
            if proj is not None:
                x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj  # [n, ctx, embed_dim]
        # the SimpleTokenizer pads with 0 after <eot>; keep <sot> .. <eot>
        lens = (ids != 0).sum(-1).clamp_min(1).cpu().numpy()
        x = x.float().cpu().numpy()
        return [x[i, : min(int(lens[i]), max_tokens)] for i in range(len(texts))]


class HFBackend:
    """A transformers encoder: token-level hidden states of the last layer or ``layer``.

    Text-only encoders (BERT, MiniLM, ...) load with ``AutoModel`` + ``AutoTokenizer``;
    dual-tower vision-language encoders (CLIP, SigLIP: a ``text_model`` and a
    ``vision_model``) also get an ``AutoImageProcessor`` and, where the model has them,
    their projections into the joint space so text and image tokens share one width.
    """

    def __init__(self, *, model: str, layer: int | None, need_images: bool, image_pool: int | None, device: str, seed: int):
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.manual_seed(seed)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModel.from_pretrained(model).to(device).eval()
        except (OSError, ValueError, KeyError) as e:
            msg = " ".join(str(e).split())[:200]
            raise TokenizerKitError(
                f"could not load transformers model {model!r} ({msg}); set `model` to a local model directory"
            ) from None
        self.name = model
        self.layer = layer
        self.device = device
        self.image_pool = image_pool
        m = self.model
        self.dual = hasattr(m, "text_model") and hasattr(m, "vision_model")
        self.image_transform = None
        if need_images:
            if not self.dual:
                raise InputError(
                    f"transformers model {model!r} has no vision tower; drop `image_fields` or use a CLIP/SigLIP-style `model`"
                )
            from transformers import AutoImageProcessor

            self.image_transform = _HFImageTransform(AutoImageProcessor.from_pretrained(model))
        if self.dual:
            tp = getattr(m, "text_projection", None)
            vp = getattr(m, "visual_projection", None)
            self.dim = int(tp.out_features) if tp is not None else int(m.config.text_config.hidden_size)
            vdim = int(vp.out_features) if vp is not None else int(m.config.vision_config.hidden_size)
            if need_images and vdim != self.dim:
                raise InputError(
                    f"transformers model {model!r}: text tokens are {self.dim}-d but image tokens {vdim}-d and it has "
                    "no projection to a joint space; use text or image fields only"
                )
        else:
            self.dim = int(m.config.hidden_size)
        n_layers = self._n_layers()
        if layer is not None and not (-n_layers - 1 <= layer <= n_layers):
            raise InputError(f"`layer` {layer} is out of range for {model!r} (hidden states 0..{n_layers}, or negative)")

    def _n_layers(self) -> int:
        cfg = self.model.config
        cfg = getattr(cfg, "text_config", cfg)
        return int(getattr(cfg, "num_hidden_layers", 0) or 0)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "layer": "last" if self.layer is None else self.layer, "dim": self.dim}

    def _states(self, module, **inputs):
        out = module(**inputs, output_hidden_states=self.layer is not None)
        return out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]

    def encode_texts(self, texts: Sequence[str], max_tokens: int) -> list[np.ndarray]:
        import torch

        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt").to(self.device)
        module = self.model.text_model if self.dual else self.model
        # pass only what the encoder takes (a CLIP text tower has no token_type_ids)
        accepted = inspect.signature(module.forward).parameters
        inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids") and k in accepted}
        with torch.inference_mode():
            if self.dual:
                h = self._states(module, **inputs)  # [n, t, hidden]
                tp = getattr(self.model, "text_projection", None)
                if tp is not None:
                    h = tp(h)  # [n, t, proj]
            else:
                h = self._states(self.model, **inputs)  # [n, t, hidden]
        mask = enc["attention_mask"].bool().cpu().numpy()
        h = h.float().cpu().numpy()
        # boolean indexing drops padding on either side (right- or left-padding tokenizers)
        return [h[i][mask[i]] for i in range(len(texts))]

    def encode_images(self, pixels) -> np.ndarray:
        import torch

        m = self.model
        with torch.inference_mode():
            h = self._states(m.vision_model, pixel_values=pixels.to(self.device))  # [n, 1+P, hidden]
            post = getattr(m.vision_model, "post_layernorm", None)
            if post is not None:
                h = post(h)
            vp = getattr(m, "visual_projection", None)
            if vp is not None:
                h = vp(h)  # [n, 1+P, proj]
            h = _pool_patches(h, self.image_pool)
        return h.float().cpu().numpy()


class _HFImageTransform:
    """Picklable ``PIL.Image -> (3, H, W)`` tensor via a transformers image processor."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image):
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


def build_backend(config) -> OpenCLIPBackend | HFBackend:
    """Backend for an ``ExtractConfig`` (validated)."""
    from .._torch_utils import resolve_device

    device = str(resolve_device(config.device))
    if config.backend == "open_clip":
        return OpenCLIPBackend(
            model=config.model or "ViT-B-32",
            pretrained=config.pretrained,
            random_init=config.random_init,
            image_pool=config.image_pool,
            device=device,
            seed=config.seed,
        )
    from ._text_embed import default_text_model_path

    return HFBackend(
        model=config.model or default_text_model_path(),
        layer=config.layer,
        need_images=bool(config.image_fields),
        image_pool=config.image_pool,
        device=device,
        seed=config.seed,
    )
