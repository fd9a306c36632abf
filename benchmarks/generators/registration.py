"""Global registration of an original onto its edited image, with per-pair diagnostics.

A text-driven editor hands back every pixel slightly moved (a sub-pixel shift, a small rotation and scale
from its decode round trip), so differencing the raw pair marks every edge. Published annotators for editing
corpora align the pair first (PromptForge-350k, arXiv 2603.29386: keypoint alignment, then comparison). Here:

1. **keypoints**: ORB (or SIFT) on both grey images, Lowe's ratio test, a RANSAC affine fit (default; an
   editor's misalignment is a similarity) or a USAC/MAGSAC homography, then sanity checks (inlier count
   and share, corner displacement, scale change, perspective);
2. **ECC refinement** (Evangelidis & Psarakis 2008, ``cv2.findTransformECC``) of that fit to sub-pixel
   accuracy, accepted when it stays within ``max_refine_px`` of the keypoint fit; when it does not, the
   keypoint fit, the refinement and ECC from the identity compete on the images' correlation;
3. fallbacks when keypoints are too few or the fit is implausible: ECC from the identity (affine), then
   phase correlation (translation), then the identity. Images too small or too uniform to register are
   left as they are (identity).

Every pair's path is recorded in a :class:`Registration` (method, fallback reason, keypoints, inliers,
residual, ECC correlation), so a runner can log and count it; nothing falls back silently.

Convention: ``matrix`` (3x3) maps original pixel coordinates to edited pixel coordinates, so
``warp(original, matrix)`` lies on top of the edited image.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

log = logging.getLogger(__name__)

IDENTITY = np.eye(3)
METHODS = ("keypoints+ecc", "keypoints", "ecc", "phase", "identity")


@dataclass(frozen=True)
class RegistrationConfig:
    """Knobs of :func:`register`. Defaults suit 128-1024 px photos with editor-sized misalignment."""

    model: str = "affine"            # affine | homography: the transform the keypoints fit and ECC refines
    detector: str = "orb"            # orb (fast, binary descriptors) | sift (slower, more keypoints on blur)
    max_features: int = 1000
    ratio: float = 0.75              # Lowe's ratio test on the two nearest descriptors
    ransac_px: float = 2.0           # USAC/MAGSAC inlier threshold (reprojection error, pixels)
    min_inliers: int = 15
    min_inlier_share: float = 0.25   # of the ratio-test matches
    max_displacement: float = 0.1    # largest corner move, as a fraction of the image diagonal
    max_log_scale: float = 0.2       # |log(area scale)| of the fit
    max_perspective: float = 0.02    # |h20 w| + |h21 h|: how far the far corners' w drifts from 1
    refine: bool = True              # ECC refinement of the keypoint fit
    ecc_iterations: int = 50
    ecc_eps: float = 1e-5
    ecc_blur: int = 5                # Gaussian kernel ECC applies to both images (odd)
    min_ecc_cc: float = 0.5          # ECC correlation below this is a failed fallback
    max_refine_px: float = 1.5       # a refinement moving a corner further than this from the keypoint fit is refused
    min_phase_response: float = 0.05
    min_side: int = 16               # smaller images are not registered (identity)
    min_texture: float = 1.0         # grey-level std (0..255) below which an image counts as uniform

    def __post_init__(self) -> None:
        if self.model not in ("affine", "homography"):
            raise ValueError(f"registration.model={self.model!r}; use 'affine' or 'homography'")
        if self.detector not in ("orb", "sift"):
            raise ValueError(f"registration.detector={self.detector!r}; use 'orb' or 'sift'")
        if not 0 < self.ratio < 1:
            raise ValueError(f"registration.ratio={self.ratio}; Lowe's ratio must lie in (0, 1), e.g. 0.75")
        if self.ecc_blur % 2 == 0:
            raise ValueError(f"registration.ecc_blur={self.ecc_blur}; OpenCV needs an odd kernel size, e.g. 5")

    @classmethod
    def from_dict(cls, d: dict | None) -> RegistrationConfig:
        from benchmarks.config import typed

        return typed(cls, d or {}, "registration")


@dataclass
class Registration:
    """The transform found for one pair and how it was found."""

    matrix: np.ndarray = field(default_factory=lambda: IDENTITY.copy())
    method: str = "identity"         # one of METHODS
    reason: str = ""                 # why the keypoint path was not used ("" when it was)
    keypoints: tuple[int, int] = (0, 0)
    matches: int = 0                 # after the ratio test
    inliers: int = 0
    residual_px: float = math.nan    # RMS reprojection error of the inliers (keypoint fit)
    ecc_cc: float = math.nan         # ECC correlation coefficient of the final transform, when ECC ran
    notes: list[str] = field(default_factory=list)  # non-fatal events (e.g. a refused ECC refinement)

    @property
    def fallback(self) -> bool:
        return not self.method.startswith("keypoints")

    def shift_px(self, shape: tuple[int, int]) -> float:
        """Largest displacement of the image corners under the transform (pixels)."""
        return corner_displacement(self.matrix, IDENTITY, shape)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["matrix"] = [round(float(v), 6) for v in self.matrix.reshape(-1)]
        d["fallback"] = self.fallback
        d["keypoints"] = list(self.keypoints)
        return d


# ---------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def opencv_single_thread() -> Iterator[None]:
    """Run OpenCV single-threaded inside the block, restoring the setting after.

    Why: once OpenCV's worker pool has started in a process, children forked from it (DataLoader workers,
    the synthetic-suite builder's process pool) can deadlock in their first parallel OpenCV call (seen: the
    suite builder hung after aligned_diff had run in the parent). Per-pair work on a few hundred pixels a
    side gains little from threads anyway; parallelism belongs across pairs.
    """
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)



def _corners(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N,2) points through a 3x3 transform."""
    p = np.hstack([points, np.ones((len(points), 1))]) @ matrix.T
    return p[:, :2] / p[:, 2:3]


def corner_displacement(a: np.ndarray, b: np.ndarray, shape: tuple[int, int]) -> float:
    """Largest distance between where two transforms put the image corners (pixels)."""
    c = _corners(shape)
    return float(np.linalg.norm(apply(a, c) - apply(b, c), axis=1).max())


def plausible(matrix: np.ndarray, shape: tuple[int, int], cfg: RegistrationConfig) -> str:
    """'' when the transform could come from an editor round trip, else what is wrong with it."""
    if not np.isfinite(matrix).all() or abs(matrix[2, 2]) < 1e-12:
        return "non-finite"
    m = matrix / matrix[2, 2]
    h, w = shape
    if abs(m[2, 0]) * w + abs(m[2, 1]) * h > cfg.max_perspective:
        return "perspective"
    det = float(np.linalg.det(m[:2, :2]))
    if det <= 0 or abs(math.log(det)) > cfg.max_log_scale:
        return "scale"
    if corner_displacement(m, IDENTITY, shape) > cfg.max_displacement * math.hypot(h, w):
        return "displacement"
    return ""


def _to_gray(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def _detector(cfg: RegistrationConfig):
    if cfg.detector == "sift":
        return cv2.SIFT_create(nfeatures=cfg.max_features), cv2.NORM_L2
    return cv2.ORB_create(nfeatures=cfg.max_features), cv2.NORM_HAMMING


def _ecc(template: np.ndarray, moving: np.ndarray, init: np.ndarray, motion: int,
         cfg: RegistrationConfig) -> tuple[np.ndarray, float] | None:
    """ECC: returns (matrix original->edited, correlation) or None when it does not converge.

    ``findTransformECC`` finds W with moving(W x) ~ template(x), i.e. W maps edited -> original; we invert it.
    """
    warp = np.linalg.inv(init)
    warp = (warp / warp[2, 2]).astype(np.float32)
    if motion != cv2.MOTION_HOMOGRAPHY:
        warp = warp[:2].copy()
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, cfg.ecc_iterations, cfg.ecc_eps)
    try:
        cc, warp = cv2.findTransformECC(template, moving, warp, motion, criteria, None, cfg.ecc_blur)
    except cv2.error:  # no convergence, or an image without variance
        return None
    full = np.vstack([warp, [0.0, 0.0, 1.0]]) if warp.shape[0] == 2 else warp.astype(np.float64)
    if not np.isfinite(full).all() or abs(np.linalg.det(full)) < 1e-12:
        return None
    inv = np.linalg.inv(full.astype(np.float64))
    return inv / inv[2, 2], float(cc)


# ---------------------------------------------------------------------------------------------- register


def register(original: np.ndarray, edited: np.ndarray, cfg: RegistrationConfig = RegistrationConfig()) -> Registration:
    """Find the transform that puts ``original`` on top of ``edited`` (RGB or grey, uint8 or float in [0,1])."""
    g_o, g_e = _to_gray(original), _to_gray(edited)
    if g_o.shape != g_e.shape:
        raise ValueError(f"register: original {g_o.shape} and edited {g_e.shape} differ in size; resize the "
                         "original to the edited image first (the pair loaders do)")
    shape = g_e.shape
    if min(shape) < cfg.min_side:
        return Registration(method="identity", reason="too_small")
    if float(g_o.std()) < cfg.min_texture or float(g_e.std()) < cfg.min_texture:
        return Registration(method="identity", reason="uniform")
    f_o, f_e = g_o.astype(np.float32), g_e.astype(np.float32)

    reg = _keypoint_fit(g_o, g_e, cfg)
    if not reg.fallback:
        if not cfg.refine:
            return reg
        refined = _ecc(f_e, f_o, reg.matrix, _motion(cfg), cfg)
        if (refined is not None and not plausible(refined[0], shape, cfg)
                and corner_displacement(refined[0], reg.matrix, shape) <= cfg.max_refine_px):
            reg.matrix, reg.ecc_cc, reg.method = refined[0], refined[1], "keypoints+ecc"
            return reg
        # the refinement failed or moved far: either estimate may be the wrong one, so let the images decide
        reg.notes.append("ecc_refine_failed" if refined is None else "ecc_refine_disagrees")
        candidates = [(reg.matrix, "keypoints", math.nan)]
        if refined is not None and not plausible(refined[0], shape, cfg):
            candidates.append((refined[0], "keypoints+ecc", refined[1]))
    else:
        candidates = []
    from_identity = _ecc(f_e, f_o, IDENTITY, cv2.MOTION_AFFINE, cfg)
    if from_identity is not None and not plausible(from_identity[0], shape, cfg):
        candidates.append((from_identity[0], "ecc", from_identity[1]))
    elif from_identity is None:
        reg.notes.append("ecc_failed")
    else:
        reg.notes.append("ecc_implausible")
    if candidates:
        scored = [(correlation(f_o, f_e, m, cfg.ecc_blur), m, method, cc) for m, method, cc in candidates]
        best = max(scored, key=lambda t: t[0])
        if best[2] == "keypoints" or best[0] >= cfg.min_ecc_cc:
            reg.matrix, reg.method = best[1], best[2]
            reg.ecc_cc = best[0]
            if best[2] == "ecc" and not reg.reason:
                reg.reason = "keypoint_fit_worse"
            return reg
        reg.notes.append(f"ecc_rejected:cc={best[0]:.2f}")
    return _phase_or_identity(reg, g_o, g_e, cfg)


def _motion(cfg: RegistrationConfig) -> int:
    return cv2.MOTION_HOMOGRAPHY if cfg.model == "homography" else cv2.MOTION_AFFINE


def correlation(g_o: np.ndarray, g_e: np.ndarray, matrix: np.ndarray, blur: int) -> float:
    """Zero-mean normalized correlation of the blurred edited image and the warped original, over the pixels
    the warp covers: the criterion ECC maximizes, used to pick between competing estimates."""
    warped, valid = warp(g_o, matrix, g_e.shape)
    a = cv2.GaussianBlur(warped, (blur, blur), 0)[valid].astype(np.float64)
    b = cv2.GaussianBlur(g_e, (blur, blur), 0)[valid].astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def _keypoint_fit(g_o: np.ndarray, g_e: np.ndarray, cfg: RegistrationConfig) -> Registration:
    detector, norm = _detector(cfg)
    kp_o, des_o = detector.detectAndCompute(g_o, None)
    kp_e, des_e = detector.detectAndCompute(g_e, None)
    reg = Registration(keypoints=(len(kp_o), len(kp_e)))
    if des_o is None or des_e is None or min(len(kp_o), len(kp_e)) < cfg.min_inliers:
        reg.reason = "few_keypoints"
        return reg
    pairs = cv2.BFMatcher(norm).knnMatch(des_o, des_e, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < cfg.ratio * p[1].distance]
    reg.matches = len(good)
    if len(good) < cfg.min_inliers:
        reg.reason = "few_matches"
        return reg
    src = np.float64([kp_o[m.queryIdx].pt for m in good])
    dst = np.float64([kp_e[m.trainIdx].pt for m in good])
    if cfg.model == "homography":
        matrix, inlier_mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, cfg.ransac_px, maxIters=2000,
                                                 confidence=0.999)
    else:
        matrix, inlier_mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_px,
                                                   maxIters=2000, confidence=0.999, refineIters=10)
        matrix = None if matrix is None else np.vstack([matrix, [0.0, 0.0, 1.0]])
    if matrix is None:
        reg.reason = "no_fit"
        return reg
    inl = inlier_mask.ravel().astype(bool)
    reg.inliers = int(inl.sum())
    if reg.inliers < cfg.min_inliers or reg.inliers < cfg.min_inlier_share * len(good):
        reg.reason = "few_inliers"
        return reg
    matrix = matrix / matrix[2, 2]
    problem = plausible(matrix, g_e.shape, cfg)
    if problem:
        reg.reason = f"implausible_fit:{problem}"
        return reg
    reg.residual_px = float(np.sqrt(np.mean(np.sum((apply(matrix, src[inl]) - dst[inl]) ** 2, axis=1))))
    reg.matrix, reg.method = matrix, "keypoints"
    return reg


def _phase_or_identity(reg: Registration, g_o: np.ndarray, g_e: np.ndarray, cfg: RegistrationConfig) -> Registration:
    shape = g_e.shape
    window = cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_64F)
    (dx, dy), response = cv2.phaseCorrelate(g_o.astype(np.float64), g_e.astype(np.float64), window)
    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
    if np.isfinite(response) and response >= cfg.min_phase_response and not plausible(matrix, shape, cfg):
        reg.matrix, reg.method = matrix, "phase"
    else:
        reg.notes.append(f"phase_rejected:response={response:.2f}")
        reg.matrix, reg.method = IDENTITY.copy(), "identity"
    if not reg.reason:
        reg.reason = "ecc_failed"
    return reg


# ---------------------------------------------------------------------------------------------- warp


def warp(image: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``image`` (H,W[,C] float32) through ``matrix`` onto a (h, w) grid.

    Returns (warped image, valid): ``valid`` is False where the edited grid maps outside the original (the
    border a shift uncovers); those pixels hold reflected content and must not count as evidence.
    """
    h, w = shape
    if corner_displacement(matrix, IDENTITY, shape) < 1e-3:  # nothing to resample: keep pixels exact
        return image.copy(), np.ones(shape, dtype=bool)
    warped = cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    inside = cv2.warpPerspective(np.ones(image.shape[:2], np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return warped, inside > 0.999


# ---------------------------------------------------------------------------------------------- counting


class RegistrationLog:
    """Counts how every pair was registered and warns the first time each fallback reason shows up (later ones
    go to DEBUG: a corpus of millions would drown the log), so a run's report can state how many pairs were
    aligned how (``as_dict``, reported through ``MaskGenerator.counters``)."""

    def __init__(self, owner: str):
        self.owner = owner
        self.counts: Counter[str] = Counter()

    def record(self, reg: Registration) -> None:
        self.counts["pairs"] += 1
        self.counts[f"method/{reg.method}"] += 1
        for note in reg.notes:
            self.counts[f"note/{note.split(':')[0]}"] += 1
        if not reg.fallback:
            return
        self.counts["fallback"] += 1
        key = f"fallback/{reg.reason.split(':')[0] or 'unknown'}"
        first = key not in self.counts
        self.counts[key] += 1
        level = logging.WARNING if first else logging.DEBUG
        log.log(level, "%s: registration fell back to %s (%s; %s)%s", self.owner, reg.method, reg.reason,
                ", ".join(reg.notes) or "no notes",
                "; later ones with this reason are counted in the generator's counters()" if first else "")

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def counters(self) -> dict[str, int]:
        """The counts as a generator's ``counters()`` reports them (``registration/<name>``)."""
        return {f"registration/{k}": v for k, v in self.as_dict().items()}
