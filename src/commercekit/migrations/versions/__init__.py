"""One Alembic revision file per feature branch."""
