"""The ``sigma`` and ``grounding_only`` generators: trained heads from a checkpoint + frozen parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.generators.base import GeneratorInfo, MaskGenerator, register_generator


class SigmaGenerator(MaskGenerator):
    def __init__(self, name: str, checkpoint: str, model: dict[str, Any] | None = None, backbone_path: str | None = None,
                 text_encoder_path: str | None = None, summary: str = "", registration: dict[str, Any] | None = None,
                 tta: dict[str, Any] | None = None):
        super().__init__()
        from benchmarks.io import file_hash
        from sigma.annotator import MIN_SIDE, SigmaAnnotator
        from sigma.model import SigmaConfig

        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{name}: no checkpoint at {checkpoint}; train it with "
                                    f"`bench train-sigma{' --variant grounding_only' if name == 'grounding_only' else ''}` "
                                    "(or set generator.checkpoint=/path/to/sigma.pt)")
        expected = SigmaConfig.from_dict(model) if model else None
        if backbone_path is None:
            from benchmarks.weights import offline_backbone_file

            backbone_path = offline_backbone_file(expected.backbone if expected else "tf_efficientnet_lite0")
        self.annotator = SigmaAnnotator.from_checkpoint(checkpoint, expected, backbone_path, text_encoder_path)
        self.min_side = MIN_SIDE
        self.registration = None  # or the original registered onto the edited image first (aligned_diff's way)
        if registration is not None:
            from benchmarks.generators.registration import RegistrationConfig, RegistrationLog

            self.registration = RegistrationConfig.from_dict(registration)
            self.registration_log = RegistrationLog(name)
            summary += "; original registered onto the edited image first (keypoints + ECC)"
        self.tta = None  # or the mask averaged over rescaled / mirrored copies of the pair
        if tta is not None:
            from benchmarks.generators.tta import TTAConfig

            self.tta = TTAConfig.from_dict(tta)
            summary += f"; mask averaged over {self.tta.describe()}"
        self.info = GeneratorInfo(name, summary, paper="SIGMA (semantic differencing + instruction prior)",
                                  weights=f"{checkpoint} (sha256 {file_hash(checkpoint, 16)})")

    def forward(self, original, edited, instruction, truth=None):
        if self.registration is not None:
            from benchmarks.generators.aligned import align_onto

            original = align_onto(original, edited, self.registration, self.registration_log)
        if self.tta is not None:
            from benchmarks.generators.tta import averaged

            return averaged(self.annotator, original, edited, instruction, self.tta, self.min_side)
        return self.annotator(original, edited, instruction)

    def counters(self) -> dict[str, int]:
        return {} if self.registration is None else self.registration_log.counters()


def _model(model: Any, **changes: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    return {**dict(model), **changes}


@register_generator("sigma")
def sigma(checkpoint: str, model: dict | None = None, backbone_path: str | None = None,
          text_encoder_path: str | None = None, registration: dict | None = None,
          tta: dict | None = None) -> MaskGenerator:
    return SigmaGenerator("sigma", checkpoint, _model(model), backbone_path, text_encoder_path,
                          "frozen-backbone semantic differencing + instruction prior with bidirectional refinement; "
                          "Stage I + Stage II", registration, tta)


@register_generator("grounding_only")
def grounding_only(checkpoint: str, model: dict | None = None, backbone_path: str | None = None,
                   text_encoder_path: str | None = None) -> MaskGenerator:
    return SigmaGenerator("grounding_only", checkpoint, _model(model, difference=False), backbone_path, text_encoder_path,
                          "instruction-only grounding: edited image + instruction, no difference stream")
