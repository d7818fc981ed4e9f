"""Public test helpers: real-server harness, pytest fixtures, contract suites.

- `commercekit.testing.servers` starts real Redis, PostgreSQL, Kafka and nginx
  from their binaries on loopback ports (no Docker needed).
- `commercekit.testing.pytest_plugin` turns them into session fixtures; enable
  it with ``pytest_plugins = ["commercekit.testing.pytest_plugin"]``.
"""
