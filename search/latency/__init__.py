"""Latency: device profiles, runtimes, per-layer tables (build, cache, predict, validate) and estimates."""
