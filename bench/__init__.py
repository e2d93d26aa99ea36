"""Benchmarks of envpack: scripts that print figures against the issues' targets."""
