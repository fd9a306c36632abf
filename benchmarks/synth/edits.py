"""Manipulation families applied to real photos, each with the exact mask of the pixels it changed.

Each family is one function ``(image, rng, area, donor) -> Edit`` registered in ``FAMILIES``. The
instruction is rendered from the region's own position, size and colour, so words locate the edit.
Side effects (edits an instruction never mentions) come from :func:`side_effect`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from benchmarks.synth import instructions as ins
from benchmarks.synth.masks import blob_mask, feather, object_mask, region_mask


@dataclass
class Edit:
    image: np.ndarray            # uint8 RGB after the edit (before the editor round trip)
    mask: np.ndarray             # bool, the pixels the edit changed
    instruction: str
    family: str
    meta: dict = field(default_factory=dict)


def _blend(image: np.ndarray, content: np.ndarray, mask: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    alpha = feather(mask, sigma)
    out = image.astype(np.float32) * (1 - alpha) + content.astype(np.float32) * alpha
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _texture_noise(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, gain: float) -> np.ndarray:
    """Grain matched to the texture around the region (inpainting otherwise leaves a flat smear)."""
    gray = image.astype(np.float32).mean(axis=2)
    detail = gray - cv2.GaussianBlur(gray, (0, 0), 2.0)
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~mask
    std = float(detail[ring].std()) if ring.any() else 4.0
    noise = cv2.GaussianBlur(rng.standard_normal(gray.shape).astype(np.float32), (0, 0), 0.7)
    return (gain * std * noise / (noise.std() + 1e-6))[:, :, None]


def inpaint(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, grain: float = 0.6) -> np.ndarray:
    """Classical inpainting (Telea or Navier-Stokes, chosen at random) plus matched grain."""
    method = cv2.INPAINT_TELEA if rng.random() < 0.5 else cv2.INPAINT_NS
    hole = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(image, hole, float(rng.integers(3, 8)), method).astype(np.float32)
    filled += _texture_noise(image, mask, rng, grain) * mask[:, :, None]
    return np.clip(np.round(filled), 0, 255).astype(np.uint8)


def _area(rng: np.random.Generator, area: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(area[0]), np.log(area[1]))))


def removal(image, rng, area, donor=None) -> Edit:
    mask = region_mask(image, _area(rng, area), rng, object_prob=0.75)
    colour = ins.colour_name(image, mask)
    edited = _blend(image, inpaint(image, mask, rng), mask, sigma=0.8)
    text = ins.render("removal", rng, size=ins.size_word(mask), colour=colour, where=ins.where(mask, rng))
    return Edit(edited, mask, text, "removal")


def splice(image, rng, area, donor=None) -> Edit:
    """Paste an object-like region of another photo; partly harmonize its colours to the new context."""
    donor = image[::-1, ::-1] if donor is None else donor
    target = _area(rng, area)
    mask = object_mask(donor, target, rng) if rng.random() < 0.7 else None
    if mask is None or not mask.any():
        mask = blob_mask(image.shape[0], target, rng)
    content = donor.astype(np.float32)
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((21, 21), np.uint8)).astype(bool) & ~mask
    if ring.any():
        shift = image[ring].mean(axis=0) - content[mask].mean(axis=0)
        content = content + rng.uniform(0.0, 0.5) * shift
    content = np.clip(content, 0, 255).astype(np.uint8)
    edited = _blend(image, content, mask, sigma=rng.uniform(0.7, 1.5))
    text = ins.render("splice", rng, size=ins.size_word(mask), colour=ins.colour_name(content, mask),
                      where=ins.where(mask, rng))
    return Edit(edited, mask, text, "splice")


def _shift_hue(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hue = rng.uniform(0, 255)
    sat = hsv[:, :, 1]
    grayish = sat[mask].mean() < 60 if mask.any() else True
    hsv[:, :, 0] = np.where(grayish, hue, (hsv[:, :, 0] + rng.uniform(50, 200)) % 256)
    hsv[:, :, 1] = np.clip(np.maximum(sat * rng.uniform(1.0, 1.6), rng.uniform(110, 200)), 0, 255)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] * rng.uniform(0.85, 1.15) + 15, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


def recolour(image, rng, area, donor=None) -> Edit:
    """Change the colour (70 %) or the lighting (30 %) of an object-like region."""
    mask = region_mask(image, _area(rng, area), rng, object_prob=0.8)
    old = ins.colour_name(image, mask)
    where = ins.where(mask, rng)
    if rng.random() < 0.7:
        content = _shift_hue(image, mask, rng)
        new = ins.colour_name(content, mask)
        if new == old:  # say what changed even when the anchor names coincide
            new = "a different shade of " + new
        text = ins.render("recolour", rng, size=ins.size_word(mask), old=old, new=new, where=where)
        kind = "hue"
    else:
        brighter = rng.random() < 0.5
        factor = rng.uniform(1.45, 1.9) if brighter else rng.uniform(0.35, 0.6)
        lift = 25.0 if brighter else 0.0
        content = np.clip(image.astype(np.float32) * factor + lift, 0, 255).astype(np.uint8)
        light, verb = ("brighter", "brighten") if brighter else ("darker", "darken")
        text = ins.render("relight", rng, size=ins.size_word(mask), colour=old, where=where, light=light,
                          light_verb=verb)
        kind = "light"
    return Edit(_blend(image, content, mask, sigma=1.2), mask, text, "recolour", {"recolour_kind": kind})


def _cartoon(img, rng):
    smooth = img
    for _ in range(2):
        smooth = cv2.bilateralFilter(smooth, 7, 50, 7)
    levels = int(rng.integers(3, 6))
    step = 256 // levels
    poster = (smooth // step) * step + step // 2
    edges = cv2.Canny(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 60, 140)
    poster[cv2.dilate(edges, np.ones((2, 2), np.uint8)) > 0] = 20
    return poster.astype(np.uint8)


def _mosaic(img, rng):
    b = int(rng.integers(6, 12))
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // b), max(1, h // b)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _sketch(img, rng):
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    blur = cv2.GaussianBlur(255 - gray, (0, 0), rng.uniform(3, 6))
    dodge = np.clip(gray * 255.0 / np.maximum(255 - blur, 1), 0, 255)
    return np.repeat(dodge.astype(np.uint8)[:, :, None], 3, axis=2)


def _painting(img, rng):
    out = cv2.medianBlur(img, int(rng.choice([7, 9])))
    return cv2.addWeighted(out, 1.4, cv2.GaussianBlur(out, (0, 0), 3), -0.4, 0)


def _blur(img, rng):
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(3.0, 6.0))


def _stone(img, rng):
    h, w = img.shape[:2]
    coarse = cv2.resize(rng.standard_normal((h // 16, w // 16)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.2)
    tex = 0.6 * coarse + 0.4 * fine / (fine.std() + 1e-6)
    tint = np.array(rng.uniform(90, 200, 3), np.float32)
    return np.clip(tint + 30 * tex[:, :, None] + 0.25 * (img.astype(np.float32) - 128), 0, 255).astype(np.uint8)


STYLES: dict[str, Callable] = {"a cartoon": _cartoon, "a mosaic": _mosaic, "a pencil sketch": _sketch,
                               "an oil painting": _painting, "a blurry patch": _blur, "stone": _stone}


def restyle(image, rng, area, donor=None) -> Edit:
    mask = region_mask(image, _area(rng, area), rng, object_prob=0.6)
    style = str(rng.choice(list(STYLES)))
    content = STYLES[style](image, rng)
    text = ins.render("restyle", rng, size=ins.size_word(mask), colour=ins.colour_name(image, mask),
                      where=ins.where(mask, rng), style=style)
    return Edit(_blend(image, content, mask, sigma=1.0), mask, text, "restyle", {"style": style})


def copymove(image, rng, area, donor=None) -> Edit:
    """Copy a region of the same photo to another place (mask = the pasted copy, the field's convention)."""
    size = image.shape[0]
    src = region_mask(image, _area(rng, area), rng, object_prob=0.7)
    ys, xs = np.nonzero(src)
    for _ in range(40):
        dy = int(rng.integers(-ys.min(), size - ys.max()))
        dx = int(rng.integers(-xs.min(), size - xs.max()))
        if abs(dy) + abs(dx) < 8:
            continue
        mat = np.float32([[1, 0, dx], [0, 1, dy]])
        dst = cv2.warpAffine(src.astype(np.uint8), mat, (size, size), flags=cv2.INTER_NEAREST).astype(bool)
        if not (dst & src).any() and dst.sum() > 0.9 * src.sum():
            break
    else:  # no room for a disjoint copy: keep the last candidate minus the overlap
        dst = dst & ~src
    moved = cv2.warpAffine(image, mat, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    text = ins.render("copymove", rng, size=ins.size_word(dst), colour=ins.colour_name(image, src),
                      src=ins.where(src, rng).replace("in the", "from the").replace("at the", "from the")
                      .replace("on the", "from the").replace("along the", "from the").replace("near the", "from near the"),
                      where=ins.where(dst, rng))
    return Edit(_blend(image, moved, dst, sigma=0.8), dst, text, "copymove")


FAMILIES: dict[str, Callable[..., Edit]] = {
    "removal": removal, "splice": splice, "recolour": recolour, "restyle": restyle, "copymove": copymove,
}


def side_effect(image: np.ndarray, avoid: np.ndarray, rng: np.random.Generator,
                area: tuple[float, float] = (0.01, 0.05)) -> tuple[np.ndarray, np.ndarray, str]:
    """An edit the instruction never mentions, away from the intended one: (image, mask, kind).

    Editors do this: a neighbouring object changes colour, a texture is redrawn, a small thing vanishes.
    """
    margin = cv2.dilate(avoid.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    mask = region_mask(image, _area(rng, area), rng, object_prob=0.5, avoid=margin)
    if not mask.any():
        return image, mask, "none"
    kind = str(rng.choice(["tint", "light", "texture", "vanish"]))
    if kind == "tint":
        content = _shift_hue(image, mask, rng)
    elif kind == "light":
        factor = rng.choice([rng.uniform(0.45, 0.7), rng.uniform(1.35, 1.7)])
        content = np.clip(image.astype(np.float32) * factor + 10, 0, 255).astype(np.uint8)
    elif kind == "texture":
        content = np.clip(_painting(image, rng).astype(np.float32) + _texture_noise(image, mask, rng, 2.0), 0, 255)
        content = content.astype(np.uint8)
    else:
        content = inpaint(image, mask, rng)
    return _blend(image, content, mask, sigma=1.0), mask, kind
