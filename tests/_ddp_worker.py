"""Run by torchrun in test_alignment_ddp.py: a tiny alignment run on 2 CPU processes (gloo)."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _align_helpers import cluster_pairs, clustered_store  # noqa: E402
from tokenizer_kit.alignment import AlignConfig, QFormerConfig, train_alignment  # noqa: E402
from tokenizer_kit.features import FeatureStore  # noqa: E402

torch.set_num_threads(1)
work = Path(sys.argv[1])
store = FeatureStore.open(work / "store")
ids = store.item_ids
cluster = [int(i[2:]) % 8 for i in ids]
pairs = cluster_pairs(ids, cluster)
cfg = AlignConfig(
    qformer=QFormerConfig(feature_dim=16, d_model=16, n_queries=2, n_layers=1, n_heads=2),
    steps=6, batch_size=16, lr=3e-3, warmup_steps=1, caption_weight=0.0, log_every=2, checkpoint_every=3,
)
s = train_alignment(store=store, pairs=pairs, out=work / "out", config=cfg)
rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else int(__import__("os").environ.get("RANK", 0))
(work / f"summary-{__import__('os').environ.get('RANK', '0')}.json").write_text(json.dumps(s))
