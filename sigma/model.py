"""SIGMA's trainable heads on frozen features: differencing, instruction prior, cross-modal refinement, decoder.

Inputs are backbone pyramids of the original and the edited image (strides 4/8/16), the instruction's
token embeddings, and (optionally) the two images at full resolution. Output: mask logits at full
resolution, the instruction prior (stride 16) and a difference embedding (stride 8) used by the
edit-noise disentanglement loss. Switches in :class:`SigmaConfig` give the ablations and the
``grounding_only`` baseline (no difference stream: the edited image and the instruction alone).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from sigma.backbone import SPECS

REFINEMENTS = ("bidirectional", "film", "none")


@dataclass(frozen=True)
class SigmaConfig:
    """Architecture of the heads (a checkpoint records it; loading checks it)."""

    backbone: str = "tf_efficientnet_lite0"
    backbone_channels: tuple[int, int, int] = (24, 40, 112)
    text_encoder: str = "minilm"
    text_dim: int = 384
    widths: tuple[int, int, int] = (16, 48, 96)   # difference features at strides 4, 8, 16
    heads: int = 4
    blocks: int = 2                               # refinement blocks at stride 16
    layer_scale: float = 0.1                      # small init of every residual branch's scale
    use_text: bool = True                         # instruction prior (grounding head)
    refinement: str = "bidirectional"             # bidirectional | film (one-way) | none
    difference: bool = True                       # False: grounding_only (no original image)
    fullres: bool = False                         # a full-resolution pixel branch (2-3x a CPU training step)
    embed_dim: int = 32                           # disentanglement embedding
    color_diff: bool = True                       # mean colour change per stride-4 cell, added to that level

    def __post_init__(self) -> None:
        if self.refinement not in REFINEMENTS:
            raise ValueError(f"refinement {self.refinement!r} is unknown; use one of {REFINEMENTS}")
        if not self.difference and not self.use_text:
            raise ValueError("grounding_only (difference=False) needs use_text=True: it has no other input")
        spec = SPECS.get(self.backbone)
        if spec is not None and tuple(self.backbone_channels) != spec.channels:
            raise ValueError(f"backbone_channels={list(self.backbone_channels)} do not match {self.backbone}'s "
                             f"{list(spec.channels)}; set sigma.model.backbone_channels={list(spec.channels)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SigmaConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"SIGMA config: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _conv(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.GroupNorm(min(8, cout), cout), nn.GELU())


def sincos_2d(h: int, w: int, dim: int, device: torch.device) -> torch.Tensor:
    """Fixed 2-D sine/cosine position code (N, dim): lets attention tie words like 'top left' to places."""
    quarter = dim // 4
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter, device=device) / max(1, quarter))
    ys = (torch.arange(h, device=device).float() + 0.5) / h
    xs = (torch.arange(w, device=device).float() + 0.5) / w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    parts = [torch.sin(2 * math.pi * gy.reshape(-1, 1) * freqs * 4), torch.cos(2 * math.pi * gy.reshape(-1, 1) * freqs * 4),
             torch.sin(2 * math.pi * gx.reshape(-1, 1) * freqs * 4), torch.cos(2 * math.pi * gx.reshape(-1, 1) * freqs * 4)]
    code = torch.cat(parts, dim=1)
    return F.pad(code, (0, dim - code.shape[1]))


class LevelDifference(nn.Module):
    """Per-position comparison of two feature maps: [a, b, |a-b|, a*b, 1-cos] -> conv features."""

    def __init__(self, cin: int, cout: int, difference: bool = True):
        super().__init__()
        self.difference = difference
        self.norm = nn.GroupNorm(1, cin, affine=False)  # puts every level on one scale before a*b
        self.fuse = nn.Sequential(_conv(4 * cin + 1 if difference else cin, cout, 1), _conv(cout, cout, 3))

    def forward(self, a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
        b = self.norm(b.float())
        if not self.difference:
            return self.fuse(b)
        a = self.norm(a.float())
        cos = F.cosine_similarity(a, b, dim=1, eps=1e-6).unsqueeze(1)
        return self.fuse(torch.cat([a, b, (a - b).abs(), a * b, 1 - cos], dim=1))


class MixFFN(nn.Module):
    """Pre-norm MLP with a depthwise 3x3 conv (spatial mixing of image tokens), layer-scaled."""

    def __init__(self, dim: int, ls: float, spatial: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.dw = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim) if spatial else None
        self.gamma = nn.Parameter(torch.full((dim,), ls))

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        y = self.fc1(self.norm(x))
        if self.dw is not None and hw is not None:
            b, n, c = y.shape
            y = y + self.dw(y.transpose(1, 2).reshape(b, c, *hw)).flatten(2).transpose(1, 2)
        return x + self.gamma * self.fc2(F.gelu(y))


class BiCrossAttention(nn.Module):
    """Image tokens attend to text tokens and text tokens to image tokens through ONE logit matrix
    (softmax over words for the image side, over positions for the text side). Pre-norm, layer-scaled."""

    def __init__(self, dim: int, heads: int, ls: float, update_text: bool = True):
        super().__init__()
        self.heads = heads
        self.norm_x, self.norm_t = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_t, self.o_x = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.gamma_x = nn.Parameter(torch.full((dim,), ls))
        # the last block's refined words would have no reader, so it only updates the image side
        self.update_text = update_text
        if update_text:
            self.v_x, self.o_t = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.gamma_t = nn.Parameter(torch.full((dim,), ls))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    def forward(self, x: torch.Tensor, t: torch.Tensor, t_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xn, tn = self.norm_x(x), self.norm_t(t)
        q, k = self._split(self.q(xn)), self._split(self.k(tn))
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])           # (B, h, Nx, Nt)
        word_mask = ~t_valid[:, None, None, :]
        to_text = logits.masked_fill(word_mask, float("-inf")).softmax(-1)
        x = x + self.gamma_x * self.o_x(self._merge(to_text @ self._split(self.v_t(tn))))
        if self.update_text:
            to_image = logits.transpose(-1, -2).softmax(-1)                  # (B, h, Nt, Nx)
            t = t + self.gamma_t * self.o_t(self._merge(to_image @ self._split(self.v_x(xn))))
        return x, t


class GroundingHead(nn.Module):
    """Instruction-derived spatial prior: edited-image tokens query the words; a linear layer reads a logit."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_t = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = MixFFN(dim, 1.0)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1))

    def forward(self, img: torch.Tensor, t: torch.Tensor, t_valid: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        ctx, _ = self.attn(self.norm_q(img), self.norm_t(t), self.norm_t(t), key_padding_mask=~t_valid, need_weights=False)
        y = self.ffn(img + ctx, hw)
        return self.out(y)  # (B, N, 1)


class SigmaNet(nn.Module):
    def __init__(self, cfg: SigmaConfig):
        super().__init__()
        self.cfg = cfg
        c4, c8, c16 = cfg.widths
        b4, b8, b16 = cfg.backbone_channels
        self.levels = nn.ModuleList([LevelDifference(b, c, cfg.difference) for b, c in zip((b4, b8, b16), (c4, c8, c16))])
        dim = c16
        if cfg.use_text:
            self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, dim), nn.LayerNorm(dim))
            self.null_token = nn.Parameter(torch.zeros(1, 1, dim))  # always valid: empty instructions attend here
            self.edited_proj = nn.Linear(b16, dim)
            self.grounding = GroundingHead(dim, cfg.heads)
            self.prior_scale = nn.Parameter(torch.tensor(1.0))
            self.prior_embed = nn.Parameter(torch.zeros(dim))
        if cfg.use_text and cfg.refinement == "bidirectional":
            self.cross = nn.ModuleList([BiCrossAttention(dim, cfg.heads, cfg.layer_scale, update_text=i < cfg.blocks - 1)
                                        for i in range(cfg.blocks)])
        if cfg.use_text and cfg.refinement == "film":
            self.film = nn.ModuleList([nn.Linear(dim, 2 * dim) for _ in range(cfg.blocks)])
            for lin in self.film:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.ffn = nn.ModuleList([MixFFN(dim, cfg.layer_scale) for _ in range(cfg.blocks)])
        self.text_ffn = nn.ModuleList([MixFFN(dim, cfg.layer_scale, spatial=False) for _ in range(cfg.blocks - 1)]) \
            if cfg.use_text and cfg.refinement == "bidirectional" else None
        extra = 1 if cfg.use_text else 0
        self.dec16 = _conv(dim + extra, c16)
        self.dec8 = _conv(c16 + c8, c8)
        self.dec4 = _conv(c8 + c4, c4)
        self.embed = nn.Conv2d(c8, cfg.embed_dim, 1)
        # ImageNet features are partly colour-invariant; a recolour needs the colours themselves
        self.color = nn.Sequential(nn.Conv2d(6, c4, 1), nn.GELU(), nn.Conv2d(c4, c4, 1)) \
            if cfg.color_diff and cfg.difference else None
        if cfg.fullres:
            self.pix = nn.Sequential(_conv(6 if cfg.difference else 3, 8), _conv(8, 8))
            self.to8 = nn.Conv2d(c4, 8, 1)
            self.head = nn.Sequential(_conv(16, 8), nn.Conv2d(8, 1, 3, padding=1))
        else:
            self.head = nn.Conv2d(c4, 1, 1)

    def encode_text(self, tokens: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.text_proj(tokens.float())
        b = t.shape[0]
        t = torch.cat([self.null_token.expand(b, -1, -1), t], dim=1)
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=valid.device), valid], dim=1)
        return t, valid

    def forward(self, feats_o: list[torch.Tensor] | None, feats_e: list[torch.Tensor], text: torch.Tensor | None = None,
                text_valid: torch.Tensor | None = None, original: torch.Tensor | None = None,
                edited: torch.Tensor | None = None, out_size: tuple[int, int] | None = None) -> dict[str, torch.Tensor | None]:
        cfg = self.cfg
        d4, d8, d16 = (lvl(None if feats_o is None else a, b)
                       for lvl, a, b in zip(self.levels, feats_o or [None] * 3, feats_e))
        if self.color is not None:
            if original is None or edited is None:
                raise ValueError("SIGMA with color_diff=True needs the images (original=, edited=)")
            delta = F.adaptive_avg_pool2d(edited.float(), d4.shape[-2:]) - F.adaptive_avg_pool2d(original.float(), d4.shape[-2:])
            d4 = d4 + self.color(torch.cat([delta, delta.abs()], dim=1))
        b, c, h, w = d16.shape
        pos = sincos_2d(h, w, c, d16.device)
        x = d16.flatten(2).transpose(1, 2) + pos
        prior = None
        if cfg.use_text:
            t, t_valid = self.encode_text(text, text_valid)
            img = self.edited_proj(feats_e[2].float().flatten(2).transpose(1, 2)) + pos
            prior = self.grounding(img, t, t_valid, (h, w))                      # (B, N, 1)
            gate = torch.sigmoid(prior)
            # the prior amplifies the difference signal where the instruction points; the residual path
            # keeps edits it never mentions
            x = x * (1 + self.prior_scale * gate) + gate * self.prior_embed
        for i in range(cfg.blocks):
            if cfg.use_text and cfg.refinement == "bidirectional":
                x, t = self.cross[i](x, t, t_valid)
                if i < cfg.blocks - 1:
                    t = self.text_ffn[i](t)
            elif cfg.use_text and cfg.refinement == "film":
                pooled = (t * t_valid[..., None]).sum(1) / t_valid.sum(1, keepdim=True)
                gamma, beta = self.film[i](pooled).chunk(2, dim=-1)
                x = x * (1 + gamma[:, None]) + beta[:, None]
            x = self.ffn[i](x, (h, w))
        y = x.transpose(1, 2).reshape(b, c, h, w)
        prior_map = None if prior is None else prior.transpose(1, 2).reshape(b, 1, h, w)
        if prior_map is not None:
            y = torch.cat([y, torch.sigmoid(prior_map)], dim=1)
        y = self.dec16(y)
        y = self.dec8(torch.cat([F.interpolate(y, size=d8.shape[-2:], mode="bilinear", align_corners=False), d8], 1))
        embed = F.normalize(self.embed(y), dim=1)
        y = self.dec4(torch.cat([F.interpolate(y, size=d4.shape[-2:], mode="bilinear", align_corners=False), d4], 1))
        size = out_size or (d4.shape[-2] * 4, d4.shape[-1] * 4)
        if cfg.fullres:
            if edited is None or (cfg.difference and original is None):
                raise ValueError("SIGMA with fullres=True needs the images (original=, edited=) at full resolution")
            pix_in = torch.cat([(edited - original).abs(), edited], 1) if cfg.difference else edited
            up = F.interpolate(self.to8(y), size=size, mode="bilinear", align_corners=False)
            logits = self.head(torch.cat([up, self.pix(pix_in.float())], 1))
        else:
            logits = F.interpolate(self.head(y), size=size, mode="bilinear", align_corners=False)
        return {"mask_logits": logits, "prior_logits": prior_map, "embed": embed}
