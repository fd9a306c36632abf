"""The offline synthetic suite: real photographs shipped with the repo, synthetic edits, editor round trip.

Nothing here downloads anything: the photographs and their attribution record ship in ``assets/``.
"""
