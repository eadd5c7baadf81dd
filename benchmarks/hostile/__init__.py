"""Seeded hostile inputs for `benchmarks/robustness.py`, one module per component: each
generates its corpus by code and throws it at a running component, interleaved with valid
inputs, and counts what came back."""
