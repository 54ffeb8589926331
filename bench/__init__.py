"""Benchmarks: each module is a script that writes bench/results/<name>.json."""
