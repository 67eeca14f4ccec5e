"""Per-case metric computation and summary tables."""
