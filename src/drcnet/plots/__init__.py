"""Matplotlib figures (Agg backend, PNG, written atomically): confusion matrices, Figure 7, curves, samples."""
