"""Benchmarks that write JSON results (device, versions, settings, figures)."""
