"""Reservation benchmarks: commercekit against PostgreSQL row locks, naive Redis and the original.

Run ``python -m benchmarks --help``; docs/benchmarks.md explains the setup and shows
the latest results.
"""
