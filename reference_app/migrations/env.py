"""Alembic environment of the reference app's tables (run by `reference_app.common.db.migrate`)."""

import reference_app.inventory.models
import reference_app.user.models  # noqa: F401 - registers the tables on AppBase
from commercekit.sql import run_migrations
from reference_app.common.db import VERSION_TABLE, AppBase

run_migrations(AppBase.metadata, VERSION_TABLE, runner="reference_app.common.db.migrate()")
