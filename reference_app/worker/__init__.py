"""The worker: the expiry sweeper, the outbox relay and reconciliation, in one process."""
