"""File-level orchestration: evaluate a run, reduce and classify an exposure, the QA page, the report."""
