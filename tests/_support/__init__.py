"""Helpers shared by the test packages (importable as ``_support.<module>``: ``pythonpath = ["tests"]``)."""
