"""Test support shared by the test suites and the benchmarks: fake servers, seeders, the tiny model, stacks."""
