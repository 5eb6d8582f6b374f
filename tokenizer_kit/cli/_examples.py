"""Examples shown at the end of each verb's ``--help`` (the README's tour, verb by verb).

``$DATA`` is the bundled Amazon Office data (``data/amazon-office`` from the
checkout); the files the examples read are the ones earlier examples write.
"""

from __future__ import annotations

from rich.markup import escape

__all__ = ["EXAMPLES", "examples"]

EXAMPLES: dict[str, list[str]] = {
    "pipeline": [
        "tokenizer-kit pipeline configs/office.toml                 # the whole chain; re-runs skip finished stages",
        "tokenizer-kit pipeline configs/office.toml --format json > summary.json",
    ],
    "validate": [
        "tokenizer-kit validate configs/office.toml                 # every bad setting at once; runs nothing",
    ],
    "presets": [
        "tokenizer-kit presets",
        "tokenizer-kit presets align --format json",
    ],
    "extract": [
        "tokenizer-kit extract $DATA/Office.item.json --backend hf --text-fields title,description,brand,categories --out feats/",
        "tokenizer-kit extract items.parquet --backend open_clip --model ViT-B-32 --pretrained ckpt.safetensors "
        "--image-fields cover --out feats/",
    ],
    "mine-pairs": [
        "tokenizer-kit mine-pairs $DATA/Office.inter.json --out pairs.parquet --heldout-out heldout.parquet",
    ],
    "align": [
        "tokenizer-kit align --features feats/ --pairs pairs.parquet --catalog $DATA/Office.item.json --out align/",
        "tokenizer-kit align --features feats/ --pairs pairs.parquet --preset no-caption --out align/   # no caption LM",
    ],
    "embed": [
        "tokenizer-kit embed --features feats/ --alignment align/ --out aligned.parquet",
    ],
    "embed-text": [
        "tokenizer-kit embed-text $DATA/Office.item.json --out office.parquet      # mean-pooled MiniLM, offline",
    ],
    "plan": [
        "tokenizer-kit plan office.parquet --catalogue-size 2420 --shapes 3x256,3x64,4x64",
    ],
    "build-codebook": [
        "tokenizer-kit build-codebook office.parquet --levels 3 --codebook-size 256 --out tok/",
        "tokenizer-kit build-codebook office.parquet --codebook-size 256 --balanced --out tok_bal/     # no collisions",
        "tokenizer-kit build-codebook office.parquet --method rq-vae --max-epochs 100 --out tok_vae/",
        "tokenizer-kit build-codebook items.parquet --id-column asin --out tok/    # ids from another column",
        "tokenizer-kit build-codebook vectors.npy --row-ids --out tok/            # no ids: row numbers 0..n-1",
    ],
    "index": [
        "tokenizer-kit index tok/ --policy reassign --embeddings office.parquet --export-lcrec tok.index.json",
    ],
    "lookup": [
        "tokenizer-kit lookup tok/ --item 42",
        'tokenizer-kit lookup tok/ --sid "<a_1><b_2><c_3><d_0>" --prefix "<a_1>" --format json',
    ],
    "import-index": [
        "tokenizer-kit import-index tok.index.json                             # collisions and trie of another tool's SIDs",
        "tokenizer-kit import-index tok.index.json --levels 3 --policy suffix --out imported/",
    ],
    "assign": [
        "tokenizer-kit assign new.parquet -t tok/ --out new_sids.parquet                 # report only",
        "tokenizer-kit assign new.parquet -t tok/ --update --out new_sids.parquet --format json   # append to the index",
    ],
    "compact": [
        "tokenizer-kit compact tok/",
    ],
    "report": [
        "tokenizer-kit report tok/ tok_bal/ --categories $DATA/Office.item.json --html report.html",
        "tokenizer-kit report tok/ tok.index.json --sid-levels 3 --format json   # another tool's SIDs, 3 code levels",
    ],
    "evaluate-retrieval": [
        "tokenizer-kit evaluate-retrieval -t tok/ -i $DATA/Office.inter.json --out retrieval.json",
        "tokenizer-kit evaluate-retrieval -t plain=tok/ -t balanced=tok_bal/ -i $DATA/Office.inter.json --seeds 0,1,2",
        "tokenizer-kit evaluate-retrieval -t tok/ -i $DATA/Office.inter.json --arch causal-lm --model smollm2 --finetune lora --lr 1e-3",
    ],
    "sid-lm": [
        "tokenizer-kit sid-lm tok/ --model smollm2 --out smollm2-sids/            # SmolLM2-135M (offline) + every SID token",
        "tokenizer-kit sid-lm tok/ --model path/to/hf-causal-lm --sid-init codebook --out lm-sids/",
    ],
}


def examples(verb: str) -> str | None:
    """The ``--help`` epilog of ``verb``: its examples, one per line (rich markup escaped)."""
    lines = EXAMPLES.get(verb)
    if not lines:
        return None
    return "Examples ($DATA = data/amazon-office in a clone of the repository):\n" + "\n".join("  " + escape(line) for line in lines)
