"""The photo world: real, openly licensed photographs shipped with the repo, split into disjoint pools.

The photographs live in ``benchmarks/synth/assets/photos/`` with one row each in ``assets/photos.csv``
(file, scene, source, author, licence, where the licence is stated, content tag, size, sha1). A scene groups
photos of one place or one shot (crops of one photo, burst shots, near-duplicates found by perceptual hash):
the pools are split by scene, so no scene reaches two pools.

Pools: ``train`` (inpainting set and editing corpus), ``val`` (the corpus's held-out pairs and the labelled
val set: every checkpoint and hyper-parameter is chosen there), ``test`` (the five benchmarks) and ``holdout``
(the generalization set). The split is deterministic: scenes are grouped by content tag, ordered by a hash
of (split seed, scene) and dealt to the pools in proportion, so every pool holds every kind of content.

The photographs that ship inside the scikit-image / scikit-learn / matplotlib wheels stay available as the
extra pool ``wheel`` (half of them are grayscale textures; no default pool uses them).

A pool is named in a synth config as ``pool:NAME`` inside a list of photo names, e.g. ``[pool:test]`` or
``[astronaut, coffee]``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.data.errors import DataError
from benchmarks.data.imageio import load_image
from benchmarks.io import content_hash

ASSETS = Path(__file__).resolve().parent / "assets"
CATALOG = ASSETS / "photos.csv"
POOL_PREFIX = "pool:"
POOL_NAMES = ("train", "val", "test", "holdout")
DEFAULT_FRACTIONS = (0.5, 0.12, 0.25, 0.13)  # train, val, test, holdout (of the scenes of each content tag)

# licences that allow redistribution and modification (the attribution record must name one of these)
# (assets/SOURCES.md says what each asks of a user; LicenseRef-SignatureEdits-free-raw is quoted there)
ALLOWED_LICENCES = frozenset({"CC0-1.0", "public-domain", "CC-BY-2.0", "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA",
                              "CC-BY-SA-2.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "Unsplash", "Pexels", "LGPL-3.0-only",
                              "LGPL-3.0-or-later", "GPL-2.0-or-later", "GPL-3.0-or-later", "BSD-2-Clause",
                              "CDLA-Permissive-1.0", "LicenseRef-SignatureEdits-free-raw"})
COLUMNS = ("file", "scene", "source", "source_path", "url", "author", "licence", "licence_evidence", "content",
           "width", "height", "sha1")
REQUIRED = ("file", "scene", "source", "licence", "licence_evidence", "content", "sha1")


@dataclass(frozen=True)
class PhotoRecord:
    """One row of the attribution record."""

    file: str
    scene: str
    source: str
    source_path: str
    url: str
    author: str
    licence: str
    licence_evidence: str
    content: str
    width: int
    height: int
    sha1: str

    @property
    def name(self) -> str:
        return Path(self.file).stem


def read_catalog(path: str | Path = CATALOG, check_files: bool = True) -> tuple[PhotoRecord, ...]:
    """Read and check the attribution record: every row complete and under an allowed licence, every row's
    file present (and, with `check_files`, every photo file in the folder beside it listed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"photo catalog {path} does not exist; point synth.photo_catalog at a photos.csv "
                        f"(columns {', '.join(COLUMNS)})")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing_cols = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing_cols:
            raise DataError(f"{path}: missing column(s) {missing_cols}; expected {list(COLUMNS)}")
        rows = list(reader)
    folder = photo_folder(path)
    records, seen = [], set()
    for line, row in enumerate(rows, start=2):
        empty = [k for k in REQUIRED if not (row.get(k) or "").strip()]
        if empty:
            raise DataError(f"{path} line {line} ({row.get('file') or '?'}): empty field(s) {empty}; every photo "
                            "needs its scene, source, licence, where the licence is stated, content tag and sha1")
        if row["licence"] not in ALLOWED_LICENCES:
            raise DataError(f"{path} line {line}: photo {row['file']!r} has licence {row['licence']!r}, which is not "
                            f"one that allows redistribution and modification; allowed: {sorted(ALLOWED_LICENCES)}. "
                            "Remove the photo or record its real licence")
        if row["file"] in seen:
            raise DataError(f"{path} line {line}: photo {row['file']!r} is listed twice")
        seen.add(row["file"])
        if not (folder / row["file"]).is_file():
            raise DataError(f"{path} line {line}: photo file {folder / row['file']} is missing; restore it or "
                            "remove its row")
        records.append(PhotoRecord(**{k: row[k].strip() for k in COLUMNS if k not in ("width", "height")},
                                   width=int(row["width"] or 0), height=int(row["height"] or 0)))
    if check_files:
        unlisted = sorted(p.name for p in folder.glob("*.jpg") if p.name not in seen)
        if unlisted:
            raise DataError(f"{folder}: photo file(s) {unlisted[:5]}{' ...' if len(unlisted) > 5 else ''} have no "
                            f"row in {path}; every shipped photo needs its attribution")
    return tuple(records)


def photo_folder(catalog: str | Path) -> Path:
    """The folder of a catalog's photo files: ``photos/`` beside ``photos.csv``."""
    return Path(catalog).parent / "photos"


# ------------------------------------------------------------------------------------------------- pools


def split_pools(records: Sequence[PhotoRecord], seed: int = 0,
                fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, tuple[str, ...]]:
    """Deal scenes to the pools, per content tag, in proportion to `fractions` (train, val, test, holdout).

    Deterministic in (records, seed, fractions); every photo of a scene lands in the same pool.
    """
    if len(fractions) != len(POOL_NAMES) or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"pool fractions {list(fractions)} must be {len(POOL_NAMES)} non-negative numbers "
                         f"summing to 1 ({', '.join(POOL_NAMES)})")
    by_scene: dict[str, list[PhotoRecord]] = {}
    for rec in records:
        by_scene.setdefault(rec.scene, []).append(rec)
    by_tag: dict[str, list[str]] = {}
    for scene, members in by_scene.items():
        tag = sorted(m.content for m in members)[0]
        by_tag.setdefault(tag, []).append(scene)
    # scenes in one sequence, tag after tag, shuffled within a tag by the seeded hash; each scene goes to the
    # pool furthest behind its share so far, which interleaves the pools evenly inside every tag's run
    order = [s for tag in sorted(by_tag)
             for s in sorted(by_tag[tag], key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())]
    share = np.asarray(fractions, dtype=float)
    dealt = np.zeros(len(POOL_NAMES))
    pools: dict[str, list[str]] = {p: [] for p in POOL_NAMES}
    for k, scene in enumerate(order):
        i = int(np.argmax(share * (k + 1) - dealt))
        dealt[i] += 1
        pools[POOL_NAMES[i]] += [m.name for m in by_scene[scene]]
    return {p: tuple(sorted(names)) for p, names in pools.items()}


@dataclass(frozen=True)
class PhotoWorld:
    """The photos a suite can draw from: the catalog's pools plus the wheel photos."""

    catalog: str = ""                       # "" = the shipped record, benchmarks/synth/assets/photos.csv
    split_seed: int = 0
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS

    @property
    def catalog_path(self) -> Path:
        return Path(self.catalog) if self.catalog else CATALOG

    def records(self) -> dict[str, PhotoRecord]:
        return _records(str(self.catalog_path))

    def pools(self) -> dict[str, tuple[str, ...]]:
        pools = split_pools(list(self.records().values()), self.split_seed, self.fractions)
        return {**pools, "wheel": tuple(WHEEL_PHOTOS)}

    def expand(self, names: Iterable[str]) -> tuple[str, ...]:
        """Photo names with every ``pool:NAME`` replaced by that pool's photos (order kept, no repeats)."""
        pools = None
        out: list[str] = []
        for name in names:
            if name.startswith(POOL_PREFIX):
                pools = pools or self.pools()
                pool = name[len(POOL_PREFIX):]
                if pool not in pools:
                    raise ValueError(f"unknown photo pool {name!r}; known pools: "
                                     f"{[POOL_PREFIX + p for p in pools]}")
                out += [n for n in pools[pool] if n not in out]
            elif name not in out:
                out.append(name)
        return tuple(out)

    def check(self, pools: dict[str, Sequence[str]]) -> None:
        """Every photo known, and no photo or scene in two of the given pools."""
        records = self.records()
        seen: dict[str, str] = {}
        for pool, names in pools.items():
            for name in names:
                if name not in records and name not in WHEEL_PHOTOS:
                    raise ValueError(f"synth pool {pool!r}: unknown photo {name!r}; photos are the file stems in "
                                     f"{self.catalog_path} or wheel photos {sorted(WHEEL_PHOTOS)}")
                scene = records[name].scene if name in records else f"wheel:{WHEEL_SCENES.get(name, name)}"
                if seen.get(scene, pool) != pool:
                    raise ValueError(f"photo {name!r} (scene {scene!r}) is in pools {seen[scene]!r} and {pool!r}; "
                                     "pools must be disjoint by photo and by scene")
                seen[scene] = pool

    def digest(self, names: Iterable[str]) -> str:
        """A hash of the photos' contents as recorded (sha1 per file), for the suite's config hash."""
        records = self.records()
        return content_hash([(name, records[name].sha1 if name in records else "wheel") for name in names])

    def load(self, name: str) -> np.ndarray:
        return _load(str(self.catalog_path), name)

    def verify(self, names: Iterable[str]) -> None:
        """Read every photo once: a missing, replaced or undecodable file raises, naming it."""
        for name in dict.fromkeys(names):
            _read(str(self.catalog_path), name)


def _records(path: str) -> dict[str, PhotoRecord]:
    stat = Path(path).stat() if Path(path).is_file() else None
    return _records_cached(path, stat and (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _records_cached(path: str, version: tuple[int, int] | None) -> dict[str, PhotoRecord]:
    return {r.name: r for r in read_catalog(path)}  # read again whenever the file changes (version)


@functools.lru_cache(maxsize=64)
def _load(catalog: str, name: str) -> np.ndarray:  # cached decode: the suite crops each photo many times
    arr = _read(catalog, name)
    arr.setflags(write=False)
    return arr


def _read(catalog: str, name: str) -> np.ndarray:
    records = _records(catalog)
    if name in records:
        rec = records[name]
        path = photo_folder(catalog) / rec.file
        data = path.read_bytes() if path.is_file() else None
        if data is None:
            raise DataError(f"photo {path} is missing; restore it or remove its row from {catalog}")
        if hashlib.sha1(data).hexdigest() != rec.sha1:
            raise DataError(f"photo {path} does not match the sha1 recorded in {catalog} (corrupt or replaced); "
                            "restore the file or record the new one")
        arr = load_image(data, name=str(path))
    elif name in WHEEL_PHOTOS:
        arr = load_image(WHEEL_PHOTOS[name]())
    else:
        raise ValueError(f"unknown photo {name!r}; photos are the file stems in {catalog} or wheel photos "
                         f"{sorted(WHEEL_PHOTOS)}")
    return arr


# ------------------------------------------------------------------------------------ the wheel photos


def _skimage(name: str) -> Path:
    import skimage

    return Path(os.path.dirname(skimage.__file__)) / "data" / name


def _sklearn(name: str) -> Path:
    import sklearn

    return Path(os.path.dirname(sklearn.__file__)) / "datasets" / "images" / name


def _matplotlib(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


# name -> file inside an installed wheel. Grayscale photos are used as 3-channel gray images.
WHEEL_PHOTOS: dict[str, Callable[[], Path]] = {
    "astronaut": lambda: _skimage("astronaut.png"),
    "coffee": lambda: _skimage("coffee.png"),
    "rocket": lambda: _skimage("rocket.jpg"),
    "hubble_deep_field": lambda: _skimage("hubble_deep_field.jpg"),
    "camera": lambda: _skimage("camera.png"),
    "brick": lambda: _skimage("brick.png"),
    "grass": lambda: _skimage("grass.png"),
    "page": lambda: _skimage("page.png"),
    "chelsea": lambda: _skimage("chelsea.png"),
    "retina": lambda: _skimage("retina.jpg"),
    "coins": lambda: _skimage("coins.png"),
    "moon": lambda: _skimage("moon.png"),
    "text": lambda: _skimage("text.png"),
    "china": lambda: _sklearn("china.jpg"),
    "flower": lambda: _sklearn("flower.jpg"),
    "grace_hopper": lambda: _matplotlib("grace_hopper.jpg"),
    "motorcycle_left": lambda: _skimage("motorcycle_left.png"),
    "motorcycle_right": lambda: _skimage("motorcycle_right.png"),
    "ihc": lambda: _skimage("ihc.png"),
    "clock_motion": lambda: _skimage("clock_motion.png"),
    "gravel": lambda: _skimage("gravel.png"),
}
WHEEL_SCENES = {"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"}  # two views of one scene


# ------------------------------------------------------------------------------------------------ crops


def random_crop(photo: np.ndarray, size: int, rng: np.random.Generator, min_frac: float = 0.45) -> np.ndarray:
    """A square crop of side U(min_frac, 1) x short side, resized to `size`, randomly mirrored."""
    import cv2

    h, w = photo.shape[:2]
    side = int(round(min(h, w) * rng.uniform(min_frac, 1.0)))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = photo[y:y + side, x:x + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    out = cv2.resize(crop, (size, size), interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def summary(world: PhotoWorld | None = None) -> str:
    """Photos and scenes per pool, and content tags per pool, as a text table."""
    world = world or PhotoWorld()
    records = world.records()
    pools = world.pools()
    tags = sorted({r.content for r in records.values()})
    lines = [f"{'pool':<9}{'photos':>7}{'scenes':>7}  " + " ".join(f"{t[:6]:>6}" for t in tags)]
    for pool in POOL_NAMES:
        members = [records[n] for n in pools[pool]]
        counts = [sum(m.content == t for m in members) for t in tags]
        lines.append(f"{pool:<9}{len(members):>7}{len({m.scene for m in members}):>7}  "
                     + " ".join(f"{c:>6}" for c in counts))
    lines.append(f"{'total':<9}{len(records):>7}{len({r.scene for r in records.values()}):>7}  "
                 + " ".join(f"{sum(r.content == t for r in records.values()):>6}" for t in tags))
    shown = world.catalog_path.resolve()
    with contextlib.suppress(ValueError):
        shown = shown.relative_to(ASSETS.parents[2])  # inside the checkout: a path that means something elsewhere
    lines.append(f"(catalog {shown}; split seed {world.split_seed}; wheel photos, an extra pool: {len(WHEEL_PHOTOS)})")
    licences: dict[str, int] = {}
    for r in records.values():
        licences[r.licence] = licences.get(r.licence, 0) + 1
    lines.append("licences: " + ", ".join(f"{k} {v}" for k, v in sorted(licences.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def near_duplicate_review(world: PhotoWorld | None = None, out: str | Path | None = None) -> list[dict[str, object]]:
    """Every pair of photos whose perceptual hashes come within the review limits, with both pools and the
    verdict (``same scene`` below the near-duplicate limits); written as CSV to `out` when given."""
    from benchmarks.synth import phash

    world = world or PhotoWorld()
    records, pools = world.records(), world.pools()
    owner = {n: p for p in POOL_NAMES for n in pools[p]}
    names = sorted(records)
    d, p = phash.distances([world.load(n) for n in names])
    rows: list[dict[str, object]] = []
    for i, j in np.argwhere(np.triu((d <= phash.DHASH_REVIEW) | (p <= phash.DCT_REVIEW), 1)):
        a, b = records[names[i]], records[names[j]]
        near = bool(phash.near_duplicate(d[i, j], p[i, j]))
        rows.append({"photo_a": a.file, "photo_b": b.file, "dhash": int(d[i, j]), "dct": int(p[i, j]),
                     "pool_a": owner[a.name], "pool_b": owner[b.name], "same_scene_recorded": a.scene == b.scene,
                     "verdict": "near-duplicate" if near else "distinct"})
    if out is not None:
        with Path(out).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["photo_a", "photo_b", "dhash", "dct", "pool_a", "pool_b",
                                                    "same_scene_recorded", "verdict"])
            writer.writeheader()
            writer.writerows(rows)
    return rows


if __name__ == "__main__":  # python -m benchmarks.synth.photos [--review-duplicates]: photos per pool
    import argparse

    parser = argparse.ArgumentParser(description="Photos per pool of the shipped photo world.")
    parser.add_argument("--review-duplicates", action="store_true",
                        help=f"also list near pairs by perceptual hash; writes {ASSETS / 'near_duplicates.csv'}")
    args = parser.parse_args()
    print(summary())
    if args.review_duplicates:
        rows = near_duplicate_review(out=ASSETS / "near_duplicates.csv")
        crossing = [r for r in rows if r["verdict"] == "near-duplicate" and r["pool_a"] != r["pool_b"]]
        print(f"{len(rows)} pairs within the review limits, {sum(r['verdict'] == 'near-duplicate' for r in rows)} "
              f"near-duplicates, {len(crossing)} of them across pools")
