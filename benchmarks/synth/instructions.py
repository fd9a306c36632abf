"""Instructions that describe the intended edit in words that locate it (position, size, colour)."""

from __future__ import annotations

import numpy as np

# (name, RGB) anchors for naming the colour of a region; nearest in a perceptual-ish space
_COLOURS = {
    "black": (20, 20, 20), "dark gray": (70, 70, 70), "gray": (128, 128, 128), "light gray": (190, 190, 190),
    "white": (240, 240, 240), "red": (200, 30, 30), "dark red": (110, 20, 20), "orange": (230, 130, 30),
    "yellow": (230, 210, 40), "brown": (120, 80, 40), "beige": (210, 190, 150), "green": (40, 160, 50),
    "dark green": (25, 80, 30), "blue": (40, 70, 200), "light blue": (130, 180, 230), "navy": (20, 30, 90),
    "purple": (120, 40, 150), "pink": (230, 130, 170), "teal": (30, 130, 130),
}
_NAMES = list(_COLOURS)
_ANCHORS = np.array([_COLOURS[n] for n in _NAMES], dtype=np.float32)

_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "center", "right")


def colour_name(image: np.ndarray, mask: np.ndarray) -> str:
    """Name of the mean colour of `image` under `mask`."""
    mean = image[mask].reshape(-1, 3).mean(axis=0) if mask.any() else image.reshape(-1, 3).mean(axis=0)
    weights = np.array([0.35, 0.45, 0.2], np.float32)  # green differences are the most visible
    return _NAMES[int(np.argmin((((_ANCHORS - mean) ** 2) * weights).sum(axis=1)))]


def location(mask: np.ndarray) -> str:
    """3x3-grid position of the mask's centroid: "top left", "center", "bottom", ..."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    row = _ROWS[min(2, int(3 * ys.mean() / h))] if len(ys) else "middle"
    col = _COLS[min(2, int(3 * xs.mean() / w))] if len(xs) else "center"
    if row == "middle" and col == "center":
        return "center"
    if row == "middle":
        return col
    if col == "center":
        return row
    return f"{row} {col}"


def where(mask: np.ndarray, rng: np.random.Generator) -> str:
    """A locating phrase, phrased a few ways ("in the top left", "on the left side", ...)."""
    loc = location(mask)
    if loc == "center":
        return str(rng.choice(["in the center", "in the middle of the image", "at the center"]))
    if " " in loc:
        return str(rng.choice([f"in the {loc}", f"at the {loc.replace(' ', '-')} corner", f"in the {loc} corner"]))
    if loc in ("left", "right"):
        return str(rng.choice([f"on the {loc}", f"on the {loc} side", f"at the {loc}"]))
    return str(rng.choice([f"at the {loc}", f"along the {loc}", f"near the {loc} of the image"]))


def size_word(mask: np.ndarray) -> str:
    frac = float(mask.mean())
    return "small " if frac < 0.05 else ("large " if frac > 0.15 else "")


TEMPLATES = {
    "removal": ["remove the {size}{colour} object {where}", "erase the {colour} thing {where}",
                "get rid of the {size}{colour} patch {where}", "delete the {colour} region {where}"],
    "splice": ["add a {size}{colour} object {where}", "insert a {colour} shape {where}",
               "put a {size}{colour} patch {where}", "paste a {colour} object {where}"],
    "recolour": ["make the {old} region {where} {new}", "change the {old} area {where} to {new}",
                 "paint the {size}{old} part {where} {new}", "recolor the {old} object {where} in {new}"],
    "relight": ["make the {colour} area {where} {light}", "{light_verb} the {size}{colour} region {where}",
                "make the part {where} {light}"],
    "restyle": ["turn the {colour} region {where} into {style}", "make the {size}{colour} area {where} look like {style}",
                "restyle the part {where} as {style}"],
    "copymove": ["duplicate the {colour} object {src} and place it {where}", "copy the {colour} patch {src} to a spot {where}",
                 "clone the {size}{colour} region {src} {where}"],
}


def render(family: str, rng: np.random.Generator, **slots: str) -> str:
    """Fill a random template of `family`; unknown slots stay out of the template choice."""
    options = [t for t in TEMPLATES[family] if all(f"{{{k}}}" not in t or k in slots for k in _slot_names(t))]
    text = str(rng.choice(options)).format(**slots)
    return " ".join(text.split())


def _slot_names(template: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


# what a user asks for when the editor ends up changing nothing but its own round trip (a no-op edit)
NOEDIT = ("improve the photo", "make it look natural", "keep the scene as it is", "make the image a bit sharper",
          "clean up the picture", "enhance the colors slightly")


def noedit_instruction(rng: np.random.Generator) -> str:
    return str(rng.choice(NOEDIT))
