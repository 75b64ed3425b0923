"""References that `python -m bench quality` measures in the same run as charnn, on the same split.

- ``lstm_reference``: a plain torch.nn.LSTM language model as one would write it (embedding,
  nn.LSTM, nn.Linear, AdamW), the same size, precision, batch, window, dropout, clipping and
  schedule (linear warm-up, then cosine decay over the time budget) as `charnn train`'s defaults,
  trained for the same time budget, then scored exactly on the whole held-out text, state carried.
- ``kneser_ney``: an interpolated Kneser-Ney character n-gram model (discounts from the counts of
  counts, continuation counts below the highest order), counted on the training text and scored
  on the held-out text.

Both read the text as charnn does: characters, the last 10% held out.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict

import torch
import torch.nn.functional as F
from torch import nn


def split(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """The training text and the held-out last ``val_fraction``, cut where charnn cuts."""
    from charnn.text.corpus import split_point

    at = split_point(len(text), val_fraction)
    return text[:at], text[at:]


class _Plain(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor, state=None):  # noqa: ANN001, ANN201
        out, state = self.lstm(self.drop(self.embed(x)), state)  # (B, T, H)
        return self.head(self.drop(out)), state  # (B, T, V)


def lstm_reference(text: str, seconds: float, device: str = "cpu", bf16: bool | None = None) -> dict:
    """Train the plain loop for ``seconds`` and score it: held-out nats per character, steps, bf16."""
    from charnn.config import ModelConfig, TrainConfig
    from charnn.device import fast_bf16

    model_defaults, train_defaults = ModelConfig(vocab_size=2), TrainConfig()
    train_text, val_text = split(text)
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in train_text], dtype=torch.long)
    val_ids = torch.tensor([index[c] for c in val_text], dtype=torch.long)
    dev = torch.device(device)
    bf16 = fast_bf16(dev) if bf16 is None else bf16
    torch.manual_seed(0)
    c = model_defaults
    model = _Plain(len(chars), c.embed, c.hidden, c.layers, c.dropout).to(dev)
    t = train_defaults
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay, betas=(0.9, 0.99), fused=True)
    b, w = t.batch_size, t.seq_len
    rows = ids[: len(ids) // b * b].view(b, -1).to(dev)  # (B, L): each row continues itself
    windows = (rows.shape[1] - 1) // w
    state, step, start = None, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        lr = _lr(step, elapsed / seconds, t)
        for group in opt.param_groups:
            group["lr"] = lr
        at = (step % windows) * w
        if at == 0:
            state = None  # a new pass over the text starts from zeros
        x, y = rows[:, at : at + w], rows[:, at + 1 : at + w + 1]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits, state = model(x, state)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), t.clip)
        opt.step()
        state = tuple(s.detach() for s in state)
        step += 1
    return {"val_nats_per_char": _score(model, val_ids.to(dev), train_text, index), "steps": step, "bf16": bf16}


def _lr(step: int, fraction: float, t) -> float:  # noqa: ANN001
    """charnn's schedule (charnn.training.optim.lr_at): linear warm-up, then cosine decay over the budget."""
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    floor = t.lr * t.min_lr_ratio
    return floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))


@torch.inference_mode()
def _score(model: _Plain, val_ids: torch.Tensor, train_text: str, index: dict[str, int]) -> float:
    """Mean -ln p per held-out character, read as one stream in fp32 with the state carried."""
    model.eval()
    context = torch.tensor([index[train_text[-1]]], dtype=torch.long, device=val_ids.device)
    inputs = torch.cat([context, val_ids[:-1]])[None]  # (1, N): each character predicts the next
    total, state = 0.0, None
    for at in range(0, inputs.shape[1], 4096):
        logits, state = model(inputs[:, at : at + 4096], state)
        total += float(F.cross_entropy(logits[0].float(), val_ids[at : at + 4096], reduction="sum"))
    return total / len(val_ids)


def kneser_ney(text: str, order: int = 6) -> dict:
    """Interpolated Kneser-Ney character n-grams of ``order``: held-out nats per character."""
    train_text, val_text = split(text)
    vocab = len(set(text))
    counts = _kn_counts(train_text, order)
    discounts = {n: _discount(counts[n]) for n in counts}
    totals, types = {}, {}
    for n, table in counts.items():
        total, kinds = defaultdict(int), defaultdict(int)
        for gram, k in table.items():
            total[gram[:-1]] += k
            kinds[gram[:-1]] += 1
        totals[n], types[n] = total, kinds
    history = train_text[-(order - 1) :]
    nll = 0.0
    for ch in val_text:
        p = 1.0 / vocab
        for n in range(1, order + 1):
            context = history[len(history) - (n - 1) :] if n > 1 else ""
            total = totals[n].get(context, 0)
            if not total:
                continue  # an unseen context: the lower order's probability stands
            d = discounts[n]
            k = counts[n].get(context + ch, 0)
            p = max(k - d, 0) / total + d * types[n][context] / total * p
        nll -= math.log(p)
        history = (history + ch)[-(order - 1) :]
    return {"val_nats_per_char": nll / len(val_text), "order": order}


def _kn_counts(text: str, order: int) -> dict[int, Counter]:
    """Counts of each n-gram: raw for the highest order, continuation counts (distinct left
    neighbours) for the lower ones."""
    top = Counter(text[i : i + order] for i in range(len(text) - order + 1))
    counts = {order: top}
    for n in range(order - 1, 0, -1):
        counts[n] = Counter(gram[1:] for gram in counts[n + 1])  # one for each distinct extension
    return counts


def _discount(table: Counter) -> float:
    """D = n1 / (n1 + 2 n2), from the counts of n-grams seen once and twice."""
    seen = Counter(table.values())
    n1, n2 = seen.get(1, 0), seen.get(2, 0)
    return n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
