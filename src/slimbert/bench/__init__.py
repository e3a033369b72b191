"""Benchmarks: experiment files + one runner writing one JSON per experiment; tables render from JSONs."""
