"""Mask generators: the MaskGenerator contract and registry (base.py), the baselines, the SIGMA adapter and the label-quality ladder."""
