"""CLI commands for models: train, evaluate, predict, report (filled in by the models work)."""
