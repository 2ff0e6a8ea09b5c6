"""Benchmarks: scripts that print numbers (`python -m pti_lab.bench.<name>`)."""
