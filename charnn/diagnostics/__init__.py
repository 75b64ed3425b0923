"""Seeing inside runs: gradient flow, training history, plots, run summaries."""
