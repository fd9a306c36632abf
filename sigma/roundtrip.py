"""Autoencoder round trips for Stage II noise calibration.

A latent-diffusion editor hands back every pixel through its autoencoder. Stage II shows SIGMA unedited
content that went through such a round trip, labelled "no edit". Two sources:

- ``DiffusersVAE``: a real ``diffusers`` ``AutoencoderKL`` from a local checkpoint folder (e.g. the VAE of
  the editor that made the corpus) — the faithful choice where the user has it;
- ``StandInAE`` (offline default): a small convolutional autoencoder with an 8x-downsampled, 4-channel
  latent (the geometry of Stable Diffusion's VAE), trained here on photographs for a few hundred steps.
  It reproduces the kind of loss a VAE causes (fine texture, edges, tone) at a similar PSNR, not the
  exact noise of any particular editor.

Both are used as ``roundtrip(images in [0,1]) -> images in [0,1]`` under ``torch.no_grad``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


class StandInAE(nn.Module):
    """Encoder: three stride-2 convs to an 8x-reduced 4-channel latent; decoder: three nearest-upsample
    + conv stages back to RGB. About 0.2 GMAC per 128 x 128 image, so it trains in minutes on a CPU."""

    def __init__(self, width: int = 32, latent: int = 4):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1), nn.GELU(), nn.Conv2d(w, 2 * w, 3, 2, 1), nn.GELU(),
            nn.Conv2d(2 * w, 2 * w, 3, 2, 1), nn.GELU(), nn.Conv2d(2 * w, latent, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, 2 * w, 3, 1, 1), nn.GELU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.GELU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * w, w, 3, 1, 1), nn.GELU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, w // 2, 3, 1, 1), nn.GELU(),
            nn.Conv2d(w // 2, 3, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        z = self.encoder(F.pad(x * 2 - 1, (0, pw, 0, ph), mode="reflect"))
        y = (self.decoder(z) + 1) / 2
        return y[..., :h, :w]

    @torch.no_grad()
    def roundtrip(self, x: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None = None,
                  latent_noise: float = 0.0) -> torch.Tensor:
        """Encode, optionally perturb the latent (a diffusion editor regenerates its latent rather than
        decoding the exact encoding, which redraws fine texture), decode. `generator` may be one per sample
        (then each sample's noise depends only on its own generator, not on the batch it is in)."""
        self.eval()
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        z = self.encoder(F.pad(x * 2 - 1, (0, pw, 0, ph), mode="reflect"))
        if latent_noise > 0:
            if isinstance(generator, list):
                noise = torch.stack([torch.randn(z.shape[1:], generator=g) for g in generator]).to(z.device)
            else:
                noise = torch.randn(z.shape, generator=generator).to(z.device)
            z = z + latent_noise * z.std(dim=(2, 3), keepdim=True) * noise
        return ((self.decoder(z) + 1) / 2)[..., :h, :w].clamp(0, 1)


def train_standin(batches: Callable[[int], torch.Tensor], steps: int, device: torch.device, lr: float = 2e-3,
                  seed: int = 0, progress: bool = True) -> tuple[StandInAE, dict]:
    """Train the stand-in on `batches(step) -> (B,3,H,W)` photos in [0,1]; returns it and its PSNR log."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    ae = StandInAE().to(device)
    opt = torch.optim.AdamW(ae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.1)
    psnr = float("nan")
    for step in tqdm(range(steps), desc="stand-in autoencoder", disable=not progress, leave=False):
        x = batches(step).to(device)
        y = ae(x)
        loss = F.l1_loss(y, x) + F.mse_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            mse = F.mse_loss(y.clamp(0, 1), x).item()
            psnr = 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-10))).item()
    ae.eval()
    return ae, {"steps": steps, "final_batch_psnr_db": round(psnr, 2)}


class DiffusersVAE(nn.Module):
    """A diffusers AutoencoderKL from a local folder; round trip = decode(mode of encode(x))."""

    def __init__(self, path: str):
        super().__init__()
        try:
            from diffusers import AutoencoderKL
        except ImportError as exc:
            raise ImportError("a diffusers VAE needs `pip install diffusers`; or leave vae_path empty to use the "
                              "offline stand-in autoencoder") from exc
        self.vae = AutoencoderKL.from_pretrained(path, local_files_only=True).eval()
        self.path = path

    @torch.no_grad()
    def roundtrip(self, x: torch.Tensor, generator: object = None) -> torch.Tensor:
        """Deterministic (the latent's mode): `generator` is accepted for the stand-in's signature, unused."""
        latent = self.vae.encode(x * 2 - 1).latent_dist.mode()
        return ((self.vae.decode(latent).sample + 1) / 2).clamp(0, 1)


def _uniform(b: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, generator=generator)


def randomized_pipeline(images: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Editor and saving-pipeline variation beyond one autoencoder (B,3,H,W in [0,1]): each sample draws its
    own resampling (down-up by 1.3-3x, half of the samples), blur, sensor-like noise and colour cross-talk,
    at `strength`. Calibration with it shows Stage II many kinds of "no edit" noise, not one editor's."""
    b, _, h, w = images.shape
    out = images
    factor = _uniform(b, 1.3, 1.3 + 1.7 * strength, generator)
    resample = torch.rand(b, generator=generator) < 0.5
    for i in torch.nonzero(resample).flatten().tolist():
        small = F.interpolate(out[i:i + 1], size=(max(8, int(h / factor[i])), max(8, int(w / factor[i]))),
                              mode="area")
        mode = "bicubic" if torch.rand(1, generator=generator).item() < 0.5 else "bilinear"
        out = torch.cat([out[:i], F.interpolate(small, size=(h, w), mode=mode, align_corners=False), out[i + 1:]])
    sigma = _uniform(b, 0.0, 0.8 * strength, generator) * (torch.rand(b, generator=generator) < 0.3)
    for i in torch.nonzero(sigma > 0.05).flatten().tolist():
        radius = max(1, int(round(3 * float(sigma[i]))))
        x = torch.arange(-radius, radius + 1, dtype=out.dtype, device=out.device)
        k = torch.exp(-x ** 2 / (2 * float(sigma[i]) ** 2))
        k = k / k.sum()
        img = F.pad(out[i:i + 1], (radius, radius, radius, radius), mode="reflect")
        img = F.conv2d(img, k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
        img = F.conv2d(img, k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
        out = torch.cat([out[:i], img, out[i + 1:]])
    noise_std = _uniform(b, 0.0, 0.015 * strength, generator).view(b, 1, 1, 1).to(out.device)
    out = out + noise_std * torch.sqrt(out.clamp_min(0) + 0.05) * torch.randn(out.shape, generator=generator).to(out.device)
    mix = torch.eye(3) + 0.02 * strength * torch.randn(b, 3, 3, generator=generator)
    out = torch.einsum("bij,bjhw->bihw", mix.to(out.device), out)
    return out.clamp(0, 1)


def editor_roundtrip(images: torch.Tensor, autoencoder: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator,
                     shift: float = 0.5, jpeg: tuple[int, int] = (75, 95), tone: float = 0.0,
                     randomize: float = 0.0, warp: float = 0.0) -> torch.Tensor:
    """What an editor hands back for `images` (B,3,H,W) in [0,1]: the autoencoder round trip, a small global
    tone/colour drift (per-channel gain and gamma of spread `tone`, as diffusion sampling shifts colours),
    with `randomize` > 0 the per-sample variation of :func:`randomized_pipeline`, then the generic steps of a
    saving pipeline: a sub-pixel resampling offset (plus, with `warp` > 0, a rotation / scale of up to `warp`
    pixels at the image corners) and JPEG re-encoding."""
    import io

    import numpy as np
    from PIL import Image

    out = autoencoder(images).float().clamp(0, 1)
    b, _, h, w = out.shape
    if tone > 0:
        gain = 1 + tone * torch.randn(b, 3, 1, 1, generator=generator).to(out.device)
        gamma = torch.exp(tone * torch.randn(b, 1, 1, 1, generator=generator)).to(out.device)
        out = (out.clamp_min(1e-6) ** gamma * gain).clamp(0, 1)
    if randomize > 0:
        out = randomized_pipeline(out, generator, randomize)
    offsets = (torch.rand(b, 2, generator=generator) * 2 - 1) * shift
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    if warp > 0:  # corner displacement of up to `warp` px from a small rotation and scale
        half = max(h, w) / 2
        angle = (torch.rand(b, generator=generator) * 2 - 1) * warp / half
        scale = 1 + (torch.rand(b, generator=generator) * 2 - 1) * warp / half
        theta[:, 0, 0] = theta[:, 1, 1] = scale * torch.cos(angle)
        theta[:, 0, 1] = -scale * torch.sin(angle) * h / w
        theta[:, 1, 0] = scale * torch.sin(angle) * w / h
    theta[:, 0, 2] = offsets[:, 0] * 2 / w
    theta[:, 1, 2] = offsets[:, 1] * 2 / h
    grid = F.affine_grid(theta.to(out.device), list(out.shape), align_corners=False)
    out = F.grid_sample(out, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    qualities = torch.randint(jpeg[0], jpeg[1] + 1, (b,), generator=generator).tolist()
    result = []
    for img, q in zip(out.cpu(), qualities):
        arr = (img.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(q))
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        result.append(torch.from_numpy(back.copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(result).to(images.device)


def editor_roundtrip_per_sample(images: torch.Tensor,
                                autoencoder: Callable[[torch.Tensor, list[torch.Generator]], torch.Tensor],
                                seeds: list[int], shift: float = 0.5, jpeg: tuple[int, int] = (75, 95),
                                tone: float = 0.0, randomize: float = 0.0, warp: float = 0.0) -> torch.Tensor:
    """:func:`editor_roundtrip` with every sample's randomness from its own seed: the same sample gets the
    same round trip in any batch, on any process (streamed calibration pairs are made per training step, in
    each process's share of the batch). The autoencoder runs batched, ``autoencoder(images, generators)``
    with one generator per sample; the tone drift, resampling and JPEG steps per sample."""
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    decoded = autoencoder(images, generators).float().clamp(0, 1)
    return torch.cat([editor_roundtrip(decoded[i:i + 1], lambda x: x, g, shift, jpeg, tone, randomize, warp)
                      for i, g in enumerate(generators)])
