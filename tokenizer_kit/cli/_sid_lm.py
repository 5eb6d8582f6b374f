"""``tokenizer-kit sid-lm``: a Hugging Face causal LM with every SID token added, saved with ``save_pretrained``."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..generative import SIDLMConfig
from ._common import OutputFormat, cli_command, emit_json, out_console, status
from ._options import settings_options

__all__ = ["register"]


def sid_lm(
    tokenizer: Path = typer.Argument(..., help="SIDs: a tokenizer directory (indexed; needed by --sid-init codebook) or an LC-Rec *.index.json."),
    cfg: SIDLMConfig = None,
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write: save_pretrained (safetensors) of the model and tokenizer, "
                             "plus sid_items.json (every item's SID, the SID token ids)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
):
    """Add every SID token to a causal LM's tokenizer and embeddings, initialised (mean or codebook), and save it.

    The output loads with plain AutoModelForCausalLM / AutoTokenizer.from_pretrained; evaluate-retrieval
    --arch causal-lm --model OUT fine-tunes it on users' histories.
    """
    from ..errors import ArtifactError
    from ..generative import sid_causal_lm

    if out.exists() and not overwrite:
        raise ArtifactError(f"output directory {out} already exists; pass --overwrite to replace it, or choose another path")
    t0 = time.perf_counter()
    with status(f"adding SID tokens to {cfg.model}"):
        lm = sid_causal_lm(tokenizer, cfg.model, config=cfg)
        lm.save(out, overwrite=overwrite)
    res = {
        "out": str(out), "model": cfg.model, "sid_init": cfg.sid_init, "sid_tokens": len(lm.vocab), "level_sizes": lm.vocab.level_sizes,
        "vocab_size": len(lm.tokenizer), "embedding_rows": int(lm.model.get_input_embeddings().num_embeddings), "items": int(len(lm.item_ids)),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if fmt == OutputFormat.json:
        emit_json(res)
    else:
        out_console.print(f"{out}: {cfg.model} with {res['sid_tokens']} SID tokens ({cfg.sid_init} init), vocabulary {res['vocab_size']}, "
                          f"{res['items']} items in sid_items.json ({res['seconds']:.1f}s)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("sid-lm")(cli_command(settings_options()(sid_lm)))
