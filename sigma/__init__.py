"""SIGMA: semantic-feature differencing under an instruction-derived prior, a model library.

- :mod:`sigma.model`: the heads (``SigmaConfig``, ``SigmaNet``): per-level differences of frozen backbone
  features, the grounding head that turns the instruction into a spatial prior, bidirectional cross-modal
  refinement, the mask decoder and the disentanglement embedding.
- :mod:`sigma.backbone`: the frozen pyramid (offline EfficientNet-Lite0, or DINOv2 from local weights).
- :mod:`sigma.text`: the instruction encoder (offline all-MiniLM-L6-v2, or a local CLIP text tower).
- :mod:`sigma.losses`, :mod:`sigma.train`: Stage I (exact masks) and Stage II (VAE-roundtrip calibration,
  EMA self-training, edit-noise disentanglement) with exact resume; ``StageConfig`` / ``Stage2Config``.
- :mod:`sigma.roundtrip`: the editor round trip (a diffusers VAE, or the offline stand-in autoencoder).
- :mod:`sigma.annotator`: inference from one exported checkpoint (``SigmaAnnotator``).
- :mod:`sigma.serialization`: its torch files, written atomically, read with ``weights_only=True``.

The package imports torch, timm and transformers, never the ``benchmarks`` harness; the harness trains it
(``benchmarks.sigma_training``) and wraps it as the ``sigma`` mask generator. See docs/design.md, "SIGMA
as built".
"""
