"""Benchmarks run by `make bench`: each module here measures one part and prints a table."""
