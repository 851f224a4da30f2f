"""CLI commands for data: simulate, plot-sample."""
