"""IML detector zoo behind one Detector contract (a model library: torch, timm and smp only).

Batch keys the detectors rely on (plain dict keys, see docs/design.md): ``image`` float (B,3,H,W) in [0,1],
``mask`` (B,1,H,W) in {0,1}, ``valid`` bool (B,1,H,W) (False on padding), ``label`` (B,) 1 = manipulated.

    from detectors import create_detector, list_detectors
    model = create_detector("segformer", variant="tiny")
    out = model(model.normalize(batch["image"]))      # {"mask_logits", "score_logits", ...}
    total, parts = model.loss(out, batch)
    probs = model.predict(image)                       # {"mask": (B,1,H,W) in [0,1], "score": (B,) or None}
"""

from detectors.base import Detector, DetectorInfo, create_detector, list_detectors, register_detector

__all__ = ["Detector", "DetectorInfo", "create_detector", "list_detectors", "register_detector"]
