"""Run outputs: the local results store (always) and W&B (when enabled)."""
