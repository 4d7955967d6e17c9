"""SASRec: causal self-attention over the item sequence (Kang & McAuley, 2018).

The standard architecture (item + learned position embeddings, post-LN transformer blocks
with a causal mask, output scored against the shared item embeddings), built from
``torch.nn.TransformerEncoder``. Training differs from RecBole's: instead of one sample per
prefix (about 100 per user on ML-100K, each re-encoding the whole prefix), every user's
sequence is cut into windows and the next item is predicted at *every* position with a
full-softmax cross-entropy. Each training target is still seen once per epoch, at a
fraction of the compute; this is the original paper's all-position training with RecBole's
CE loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torch import nn

from recagent.tools.data.split import LeaveOneOutSplit
from recagent.tools.recommenders.base import FitReport, Query, RecommenderConfig, TorchRecommender
from recagent.tools.recommenders.training import train_with_early_stopping


class SASRecConfig(RecommenderConfig):
    """SASRec hyper-parameters (architecture defaults as RecBole's)."""

    max_len: int = Field(50, ge=2, description="longest history the model attends to")
    hidden_size: int = Field(64, ge=8, description="embedding and transformer width")
    n_layers: int = Field(2, ge=1, description="transformer blocks")
    n_heads: int = Field(2, ge=1, description="attention heads per block")
    inner_size: int = Field(256, ge=8, description="feed-forward width")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout on embeddings, attention and feed-forward")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty")
    batch_size: int = Field(128, ge=1, description="sequence windows per step")
    max_epochs: int = Field(200, ge=1, description="upper bound on training epochs")
    patience: int = Field(10, ge=1, description="evaluations without validation improvement before stopping")
    eval_every: int = Field(1, ge=1, description="epochs between validation evaluations")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")


class _SASRecNet(nn.Module):
    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        if cfg.hidden_size % cfg.n_heads:
            raise ValueError(f"hidden_size ({cfg.hidden_size}) must be divisible by n_heads ({cfg.n_heads})")
        self.item = nn.Embedding(n_items + 1, cfg.hidden_size, padding_idx=0)  # index 0 = padding
        self.pos = nn.Embedding(cfg.max_len, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=1e-12)
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            cfg.hidden_size, cfg.n_heads, cfg.inner_size, cfg.dropout, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, H) for right-padded item sequences (B, L) of 1-based item ids."""
        length = seq.shape[1]
        x = self.item(seq) + self.pos(torch.arange(length, device=seq.device))
        x = self.drop(self.norm(x))
        # right padding + a causal mask: a real position never attends to padding
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=seq.device)
        return self.encoder(x, mask=mask, is_causal=True)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of all real items (padding excluded) for each hidden state."""
        return hidden @ self.item.weight[1:].T


def _windows(sequences: Sequence[np.ndarray], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut sequences into right-padded (input, target) windows covering every next-item target once."""
    inputs, targets = [], []
    for s in sequences:
        s = np.asarray(s, dtype=np.int64) + 1
        end = len(s)
        while end > 1:
            w = s[max(0, end - max_len - 1) : end]
            inp, tgt = np.zeros(max_len, dtype=np.int64), np.zeros(max_len, dtype=np.int64)
            inp[: len(w) - 1], tgt[: len(w) - 1] = w[:-1], w[1:]
            inputs.append(inp)
            targets.append(tgt)
            end -= max_len
    if not inputs:
        raise ValueError("no training sequence has two or more items")
    return torch.as_tensor(np.stack(inputs)), torch.as_tensor(np.stack(targets))


class SASRec(TorchRecommender):
    """Next-item prediction from the (last ``max_len`` items of the) history."""

    name = "sasrec"
    config_cls = SASRecConfig

    def _build(self) -> None:
        """Create the (untrained) network for the current sizes."""
        self.net = _SASRecNet(self.n_items, self.config)

    def fit(self, split: LeaveOneOutSplit, show_progress: bool = True, checkpoint_dir: Path | None = None) -> FitReport:
        """Train with all-position cross-entropy; early stopping on valid NDCG@10."""
        cfg: SASRecConfig = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.n_users, self.n_items = split.dataset.n_users, split.dataset.n_items
        self._build()
        inputs, targets = _windows(split.train_sequences, cfg.max_len)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

        def run_epoch(_epoch: int) -> float:
            perm = torch.randperm(len(inputs))
            total, count = 0.0, 0
            for start in range(0, len(perm), cfg.batch_size):
                b = perm[start : start + cfg.batch_size]
                tgt = targets[b]
                keep = tgt > 0
                hidden = self.net(inputs[b])[keep]
                loss = nn.functional.cross_entropy(self.net.logits(hidden), tgt[keep] - 1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                n = int(keep.sum())
                total, count = total + loss.item() * n, count + n
            return total / max(count, 1)

        return train_with_early_stopping(
            self,
            opt,
            run_epoch,
            split,
            cfg.max_epochs,
            cfg.patience,
            eval_every=cfg.eval_every,
            show_progress=show_progress,
            checkpoint_dir=checkpoint_dir,
        )

    @torch.no_grad()
    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """Next-item scores after each query's history (an empty history scores by item bias alone)."""
        if not queries:
            return np.zeros((0, self.n_items), dtype=np.float32)
        L = self.config.max_len
        seq = np.zeros((len(queries), L), dtype=np.int64)
        last = np.zeros(len(queries), dtype=np.int64)
        for r, q in enumerate(queries):
            h = np.asarray(q.history, dtype=np.int64)[-L:] + 1
            seq[r, : len(h)] = h
            last[r] = max(len(h) - 1, 0)
        hidden = self.net(torch.as_tensor(seq))
        out = hidden[torch.arange(len(queries)), torch.as_tensor(last)]
        return self.net.logits(out).numpy().astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """Item embeddings (the output layer is tied to them)."""
        return self.net.item.weight[1:].detach().numpy().astype(np.float32)
