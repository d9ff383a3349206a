"""Generators of test data shared by the test suite and the benchmarks (never imported by a stage)."""
