"""Benchmarks and checks of tfvit, each run from the repository root as ``python -m tools.NAME``."""
