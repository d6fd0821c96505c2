"""Shared constants for the explorer tests (their data fixtures live in conftest.py)."""

SMALL = {"preset": "hst-small", "n_embd": 16, "n_head": 2}  # digits-dvs shaped, cheap to train
