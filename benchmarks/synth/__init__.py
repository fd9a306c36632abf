"""The offline synthetic suite: real photographs from dependency wheels, synthetic edits, editor round trip.

Nothing here downloads anything: every source photo ships inside scikit-image, scikit-learn or matplotlib.
"""
