"""Benchmarks of the scheduler against its peers; run by hand, see bench/README.md."""
