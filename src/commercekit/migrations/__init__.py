"""commercekit's Alembic migrations (one branch per feature); see `commercekit.sql`."""
