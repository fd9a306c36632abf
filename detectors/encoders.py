"""timm encoders for the detector families, with weights from a local file (never a download by default).

``pretrained_path`` is a timm-format state dict of the full model (classifier included or not); only the
tensors the features-only encoder has are loaded, and every one of them must be present. The harness
supplies the offline ImageNet EfficientNet-Lite0 file where an ImageNet CNN encoder is the family's norm.
"""

from __future__ import annotations

from torch import nn

from detectors.train_state import load_state_dict_file


def load_encoder_weights(model: nn.Module, path: str) -> None:
    """Strict on what the model uses: a missing tensor is an error naming the file and the first keys."""
    state = load_state_dict_file(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {len(missing)} encoder tensors (first: {missing[:3]}); "
                         "is it a timm state dict of the same architecture?")
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"{path}: shape mismatch for {bad[:3]}; is it the same architecture and variant?")
    model.load_state_dict({k: state[k] for k in own}, strict=True)


def timm_encoder(name: str, out_indices: tuple[int, ...], pretrained_path: str | None = None,
                 pretrained: bool = False, in_chans: int = 3, **kwargs) -> nn.Module:
    """A features-only timm model; weights from `pretrained_path`, or timm's own when `pretrained` (online)."""
    import timm

    model = timm.create_model(name, features_only=True, out_indices=tuple(out_indices), in_chans=in_chans,
                              pretrained=pretrained and not pretrained_path, **kwargs)
    if pretrained_path:
        load_encoder_weights(model, pretrained_path)
    return model
