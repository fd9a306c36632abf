"""A second implementation of the five manipulation families, written apart from ``edits.py`` and used only
by the generalization set (``implementation: alt``), so a model that learned one implementation's traces
meets edits made by other code.

Where they differ: removals fill the hole by Poisson-blending a patch of the same photo taken from nearby
(exemplar fill) instead of diffusion inpainting; splices are Poisson-cloned (normal or mixed gradients);
recolours rotate the chroma plane in CIELAB with a partial opacity, or relight the region with a soft
directional falloff; restyles use other filters (edge-preserving stylization, coloured pencil, detail
enhancement, posterize with dithering noise, pixel shuffling); copy-moves rotate and scale the copy. Blend
profiles vary per edit (hard edge, narrow or wide feather, partial opacity), and the true mask is where the
blend weight reaches one half, so it follows what actually changed.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from benchmarks.synth import instructions as ins
from benchmarks.synth.edits import Edit
from benchmarks.synth.masks import blob_mask, object_mask, region_mask


def _area(rng: np.random.Generator, area: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(area[0]), np.log(area[1]))))


def _profile(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A blend weight (H, W) in [0, 1]: hard, narrow or wide feather, possibly at partial opacity."""
    kind = rng.choice(["hard", "narrow", "wide", "partial"], p=[0.25, 0.3, 0.25, 0.2])
    m = mask.astype(np.float32)
    if kind == "hard":
        alpha = m
    elif kind == "narrow":
        alpha = cv2.GaussianBlur(m, (0, 0), rng.uniform(0.5, 1.2))
    elif kind == "wide":
        alpha = cv2.GaussianBlur(m, (0, 0), rng.uniform(2.0, 3.5))
    else:
        alpha = cv2.GaussianBlur(m, (0, 0), 1.0) * rng.uniform(0.6, 0.9)
    return np.clip(alpha, 0, 1)


def _compose(image: np.ndarray, content: np.ndarray, mask: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """Blend `content` into `image` under a random profile; the truth is where the weight reaches 0.5."""
    alpha = _profile(mask, rng)
    out = image.astype(np.float32) * (1 - alpha[:, :, None]) + content.astype(np.float32) * alpha[:, :, None]
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    changed = np.abs(out.astype(np.int16) - image.astype(np.int16)).max(axis=2) > 0
    truth = (alpha >= 0.5) & changed
    return out, truth if truth.any() else mask & changed


def _clone(src: np.ndarray, dst: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson-clone the masked part of `src` into `dst` at the same place."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 4:
        return dst.copy()
    m = cv2.dilate(mask.astype(np.uint8) * 255, np.ones((3, 3), np.uint8))
    h, w = mask.shape
    m[0, :] = m[-1, :] = 0
    m[:, 0] = m[:, -1] = 0  # seamlessClone needs the region inside the frame
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    centre = (int((x0 + x1 + 1) // 2), int((y0 + y1 + 1) // 2))
    flag = cv2.MIXED_CLONE if rng.random() < 0.3 else cv2.NORMAL_CLONE
    try:
        return cv2.seamlessClone(src, dst, m, centre, flag)
    except cv2.error:  # degenerate regions (touching the border): plain copy
        out = dst.copy()
        out[mask] = src[mask]
        return out


def removal(image, rng, area, donor=None) -> Edit:
    mask = region_mask(image, _area(rng, area), rng, object_prob=0.75)
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    best, source = None, image
    for _ in range(12):  # a nearby patch of the same photo that does not overlap the hole
        dy = int(rng.choice([-1, 1]) * rng.integers(bh // 2 + 2, bh + 6))
        dx = int(rng.choice([-1, 1]) * rng.integers(0, bw + 6))
        mat = np.float32([[1, 0, dx], [0, 1, dy]])
        shifted = cv2.warpAffine(image, mat, (w, h), borderMode=cv2.BORDER_REFLECT)
        score = float(np.abs(shifted[mask].astype(np.float32).mean(0) - image[~mask].astype(np.float32).mean(0)).sum())
        if best is None or score < best:
            best, source = score, shifted
    filled = _clone(source, image, mask, rng)
    filled = cv2.GaussianBlur(filled, (0, 0), rng.uniform(0.3, 1.0)) if rng.random() < 0.5 else filled
    edited, truth = _compose(image, filled, mask, rng)
    text = ins.render("removal", rng, size=ins.size_word(truth), colour=ins.colour_name(image, mask),
                      where=ins.where(truth, rng))
    return Edit(edited, truth, text, "removal", {"implementation": "alt"})


def splice(image, rng, area, donor=None) -> Edit:
    donor = image[:, ::-1] if donor is None else donor
    target = _area(rng, area)
    mask = object_mask(donor, target, rng) if rng.random() < 0.6 else None
    if mask is None or not mask.any():
        mask = blob_mask(image.shape[0], target, rng)
    content = _clone(donor, image, mask, rng) if rng.random() < 0.6 else donor
    edited, truth = _compose(image, content, mask, rng)
    text = ins.render("splice", rng, size=ins.size_word(truth), colour=ins.colour_name(edited, truth),
                      where=ins.where(truth, rng))
    return Edit(edited, truth, text, "splice", {"implementation": "alt"})


def recolour(image, rng, area, donor=None) -> Edit:
    mask = region_mask(image, _area(rng, area), rng, object_prob=0.8)
    old = ins.colour_name(image, mask)
    where = ins.where(mask, rng)
    if rng.random() < 0.65:
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
        a, b = lab[:, :, 1] - 128, lab[:, :, 2] - 128
        turn = rng.uniform(np.pi / 3, 5 * np.pi / 3)
        boost = rng.uniform(1.2, 2.2)
        lab[:, :, 1] = 128 + boost * (a * np.cos(turn) - b * np.sin(turn)) + rng.uniform(-25, 25)
        lab[:, :, 2] = 128 + boost * (a * np.sin(turn) + b * np.cos(turn)) + rng.uniform(-25, 25)
        content = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
        edited, truth = _compose(image, content, mask, rng)
        new = ins.colour_name(edited, truth)
        new = new if new != old else "a different shade of " + new
        text = ins.render("recolour", rng, size=ins.size_word(truth), old=old, new=new, where=where)
        kind = "chroma"
    else:
        h, w = mask.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = 0.5 + 0.5 * np.tanh(3 * ((xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle)))
        brighter = rng.random() < 0.5
        gain = (1.3 + 0.6 * ramp) if brighter else (0.7 - 0.35 * ramp)
        content = np.clip(image.astype(np.float32) * gain[:, :, None] + (15 if brighter else 0), 0, 255).astype(np.uint8)
        edited, truth = _compose(image, content, mask, rng)
        light, verb = ("brighter", "brighten") if brighter else ("darker", "darken")
        text = ins.render("relight", rng, size=ins.size_word(truth), colour=old, where=where, light=light,
                          light_verb=verb)
        kind = "light"
    return Edit(edited, truth, text, "recolour", {"recolour_kind": kind, "implementation": "alt"})


def _stylize(img, rng):
    return cv2.stylization(img, sigma_s=float(rng.uniform(30, 90)), sigma_r=float(rng.uniform(0.25, 0.6)))


def _pencil(img, rng):
    _, colour = cv2.pencilSketch(img, sigma_s=float(rng.uniform(30, 70)), sigma_r=0.07, shade_factor=0.05)
    return colour


def _detail(img, rng):
    return cv2.detailEnhance(img, sigma_s=float(rng.uniform(8, 20)), sigma_r=float(rng.uniform(0.3, 0.6)))


def _dither(img, rng):
    levels = int(rng.integers(3, 7))
    noise = rng.uniform(-0.5, 0.5, img.shape) * 255 / levels
    q = np.round((img.astype(np.float32) + noise) / 255 * (levels - 1)) / (levels - 1) * 255
    return np.clip(q, 0, 255).astype(np.uint8)


def _shuffle(img, rng):
    b = int(rng.integers(3, 6))
    h, w = img.shape[:2]
    out = img.copy()
    for y in range(0, h - b + 1, b):  # pixels shuffled inside small cells: texture gone, colour kept
        for x in range(0, w - b + 1, b):
            cell = out[y:y + b, x:x + b].reshape(-1, 3)
            out[y:y + b, x:x + b] = cell[rng.permutation(len(cell))].reshape(b, b, 3)
    return out


ALT_STYLES: dict[str, Callable] = {"a watercolor": _stylize, "a colored pencil drawing": _pencil,
                                   "an HDR photo": _detail, "a posterized print": _dither, "noise": _shuffle}


def restyle(image, rng, area, donor=None) -> Edit:
    mask = region_mask(image, _area(rng, area), rng, object_prob=0.6)
    style = str(rng.choice(list(ALT_STYLES)))
    edited, truth = _compose(image, ALT_STYLES[style](image, rng), mask, rng)
    text = ins.render("restyle", rng, size=ins.size_word(truth), colour=ins.colour_name(image, mask),
                      where=ins.where(truth, rng), style=style)
    return Edit(edited, truth, text, "restyle", {"style": style, "implementation": "alt"})


def copymove(image, rng, area, donor=None) -> Edit:
    size = image.shape[0]
    src = region_mask(image, _area(rng, area), rng, object_prob=0.7)
    ys, xs = np.nonzero(src)
    centre = (float(xs.mean()), float(ys.mean()))
    dst = np.zeros_like(src)
    for _ in range(40):  # rotated, scaled copy at a place it does not overlap its source
        mat = cv2.getRotationMatrix2D(centre, float(rng.uniform(-35, 35)), float(rng.uniform(0.8, 1.25)))
        mat[:, 2] += rng.uniform(-size / 2, size / 2, 2)
        cand = cv2.warpAffine(src.astype(np.uint8), mat, (size, size), flags=cv2.INTER_NEAREST).astype(bool)
        if cand.sum() > 0.6 * src.sum() and not (cand & src).any():
            dst = cand
            break
    if not dst.any():
        dst = cand & ~src
    moved = cv2.warpAffine(image, mat, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    edited, truth = _compose(image, moved, dst, rng)
    src_words = ins.where(src, rng)
    for a in ("in the", "at the", "on the", "along the"):
        src_words = src_words.replace(a, "from the")
    text = ins.render("copymove", rng, size=ins.size_word(truth), colour=ins.colour_name(image, src), src=src_words,
                      where=ins.where(truth, rng))
    return Edit(edited, truth, text, "copymove", {"implementation": "alt"})


ALT_FAMILIES: dict[str, Callable[..., Edit]] = {
    "removal": removal, "splice": splice, "recolour": recolour, "restyle": restyle, "copymove": copymove,
}


def alt_side_effect(image: np.ndarray, avoid: np.ndarray, rng: np.random.Generator,
                    area: tuple[float, float] = (0.01, 0.05)) -> tuple[np.ndarray, np.ndarray, str]:
    """An unmentioned extra edit away from the intended one, made by this module's own families."""
    margin = cv2.dilate(avoid.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    mask = region_mask(image, _area(rng, area), rng, object_prob=0.5, avoid=margin)
    if not mask.any():
        return image, mask, "none"
    kind = str(rng.choice(["tint", "texture"]))
    if kind == "tint":
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
        lab[:, :, 1:] = 128 + (lab[:, :, 1:] - 128) * rng.uniform(1.5, 2.5) + rng.uniform(-30, 30, 2)
        content = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    else:
        content = _stylize(image, rng)
    edited, truth = _compose(image, content, mask, rng)
    return edited, truth & ~margin, kind
