"""Mix Transformer (MiT) encoder and the SegFormer all-MLP decoder, shared by ``segformer`` and ``trufor``.

Our own compact code after Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation
with Transformers", NeurIPS 2021 (arXiv:2105.15203):

- four stages at strides 4/8/16/32, each an *overlapping* patch embedding (conv K=7/S=4/P=3 for the
  first stage, K=3/S=2/P=1 after; paper Sec. 3.1) + LayerNorm, a stack of transformer blocks and a
  closing LayerNorm;
- *efficient self-attention*: keys/values come from the tokens shrunk by a ``sr_ratio`` x ``sr_ratio``
  strided conv (reduction ratios 8/4/2/1; paper Eq. 2 writes it as reshape + linear, the same map);
- *Mix-FFN*: fc -> 3x3 depthwise conv -> GELU -> fc, which replaces positional encodings (paper Eq. 3).

Parameter names follow the public MiT checkpoints (``patch_embed1.proj``, ``block1.0.attn.q``,
``block1.0.mlp.dwconv.dwconv``, ``norm1``, ...) as smp's ``mit_b*`` encoders use them, so an ImageNet MiT
state dict loads unchanged; ``tests/detectors/test_segformer_trufor.py`` checks outputs against smp's
encoder given the same weights. Writing it here (rather than importing smp's class, whose source is under
the NVIDIA non-commercial licence) also gives per-stage access that TruFor's dual stream needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from detectors.encoders import load_encoder_weights


@dataclass(frozen=True)
class MiTGeometry:
    """Widths, depths, heads and spatial-reduction ratios of the four stages (SegFormer appendix settings)."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: float = 4.0


# SegFormer's MiT-B0 .. B2 settings; the same numbers as smp's mit_b0..mit_b2 encoder params.
MIT_GEOMETRIES: dict[str, MiTGeometry] = {
    "mit_b0": MiTGeometry(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
    "mit_b1": MiTGeometry(embed_dims=(64, 128, 320, 512), depths=(2, 2, 2, 2)),
    "mit_b2": MiTGeometry(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3)),
}


def init_weights(m: nn.Module) -> None:
    """MiT's initialisation (also used by the CMX fusion modules): apply with ``module.apply``."""
    # truncated normal linears, unit LayerNorms, He-normal (fan-out) convs.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class OverlapPatchEmbed(nn.Module):
    """Strided conv whose kernel is larger than its stride (patches overlap), then LayerNorm on channels."""

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys/values come from a sequence shrunk by sr_ratio^2 (SegFormer Eq. 2)."""

    def __init__(self, dim: int, heads: int, sr_ratio: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"MiT stage width {dim} is not divisible by its {heads} heads")
        self.heads, self.sr_ratio = heads, sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).view(b, n, self.heads, d).transpose(1, 2)
        kv_in = x
        if self.sr_ratio > 1:
            kv_in = self.norm(self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2))
        k, v = self.kv(kv_in).view(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _DepthwiseConv(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """fc -> 3x3 depthwise conv -> GELU -> fc: the conv leaks position, so MiT needs no positional code."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = _DepthwiseConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MixFFN(LN(x)), with stochastic depth."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return x
        keep = 1.0 - self.drop_path
        mask = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep)
        return x * mask / keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self._drop(self.attn(self.norm1(t), h, w))
        t = t + self._drop(self.mlp(self.norm2(t), h, w))
        return t.transpose(1, 2).reshape(b, c, h, w)


class MixTransformer(nn.Module):
    """The hierarchical MiT encoder: ``forward(x)`` returns the four stage maps at strides 4/8/16/32."""

    def __init__(self, geometry: MiTGeometry, in_chans: int = 3, drop_path_rate: float = 0.1):
        super().__init__()
        self.geometry = geometry
        dims = geometry.embed_dims
        rates = torch.linspace(0, drop_path_rate, sum(geometry.depths)).tolist()  # linear stochastic depth
        start = 0
        for i in range(4):
            kernel, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}",
                    OverlapPatchEmbed(in_chans if i == 0 else dims[i - 1], dims[i], kernel, stride))
            depth = geometry.depths[i]
            setattr(self, f"block{i + 1}", nn.ModuleList(
                MiTBlock(dims[i], geometry.num_heads[i], geometry.sr_ratios[i], geometry.mlp_ratio, rates[start + j])
                for j in range(depth)))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i], eps=1e-6))
            start += depth
        self.apply(init_weights)

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        return self.geometry.embed_dims

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Run stage ``i`` (0-based): patch embedding, blocks, closing LayerNorm; (B,C,H,W) in and out."""
        x = getattr(self, f"patch_embed{i + 1}")(x)
        for block in getattr(self, f"block{i + 1}"):
            x = block(x)
        return getattr(self, f"norm{i + 1}")(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i in range(4):
            x = self.stage(i, x)
            feats.append(x)
        return feats


def mit_encoder(arch: str, pretrained_path: str | None = None, pretrained: bool = False,
                in_chans: int = 3, drop_path_rate: float = 0.1) -> MixTransformer:
    """A MiT encoder of a named geometry (``mit_b0`` .. ``mit_b2``).

    Weights: ``pretrained_path`` is a local MiT state dict with the public key names (smp's ``mit_b*``
    encoder or the original ImageNet ``mit_b*.pth``; extra keys such as ``head.*`` are ignored, a missing
    or misshapen one is an error). ``pretrained=True`` without a path asks smp for its ImageNet weights,
    which downloads from the Hugging Face hub (users with a network only).
    """
    if arch not in MIT_GEOMETRIES:
        raise ValueError(f"unknown MiT geometry {arch!r}; known: {sorted(MIT_GEOMETRIES)}")
    model = MixTransformer(MIT_GEOMETRIES[arch], in_chans=in_chans, drop_path_rate=drop_path_rate)
    if pretrained_path:
        load_encoder_weights(model, pretrained_path)
    elif pretrained:
        import segmentation_models_pytorch as smp

        state = smp.encoders.get_encoder(arch, weights="imagenet").state_dict()
        model.load_state_dict({k: state[k] for k in model.state_dict()}, strict=True)
    return model


class AllMLPDecoder(nn.Module):
    """SegFormer's all-MLP decoder (paper Sec. 3.2): a per-stage linear layer to a common width
    ``embed_dim``, upsampling to 1/4, concatenation (deepest first), a 1x1 fuse (conv + BN + ReLU), dropout
    and a 1x1 prediction. Returns logits at 1/4 of the input (the stride of the first stage)."""

    def __init__(self, in_channels: tuple[int, ...], embed_dim: int, num_classes: int = 1, dropout: float = 0.1):
        super().__init__()
        self.linear = nn.ModuleList(nn.Conv2d(c, embed_dim, 1) for c in in_channels)  # per-token linear
        self.fuse = nn.Sequential(nn.Conv2d(len(in_channels) * embed_dim, embed_dim, 1, bias=False),
                                  nn.BatchNorm2d(embed_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout2d(dropout)
        self.pred = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        ups = [F.interpolate(lin(f), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size
               else lin(f) for lin, f in zip(self.linear, feats)]
        return self.pred(self.dropout(self.fuse(torch.cat(ups[::-1], dim=1))))
