"""Alembic migrations of the reference app's own tables (``refapp_alembic_version``).

Applied by `reference_app.common.db.migrate` when a service starts, after
commercekit's own.
"""
