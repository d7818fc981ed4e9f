"""Orders: their shipped and returned units in the stock journal's opening.

Revision ID: orders_0004
Revises: orders_0003
Create Date: 2026-12-02

``reservations_0005`` opens the journal with every sold unit committed; the
orders know which of them shipped, and what became of those returned:
OPENING rows move them on (shipped, damaged, written off).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "orders_0004"
down_revision = "orders_0003"
branch_labels = None
depends_on = ("reservations_0005",)  # the journal it adds to

_MOVES = (
    ("committed", "shipped", "shipped - returned"),
    ("committed", "damaged", "damaged"),
    ("committed", "written_off", "returned - damaged - resold"),
)


def upgrade() -> None:
    bind = op.get_bind()
    journal = sa.table(
        "commercekit_stock_journal",
        *(sa.column(name) for name in ("at", "sku", "location", "reason", "quantity",
                                       "source", "target")),
    )  # fmt: skip
    rows = []
    for source, target, units in _MOVES:
        found = bind.execute(
            sa.text(
                f"SELECT sku, location, SUM({units}) FROM commercekit_order_lines "  # noqa: S608
                "GROUP BY sku, location"
            )
        )
        for sku, location, quantity in found:
            if quantity:
                rows.append(
                    {"at": dt.datetime.now(dt.UTC), "sku": sku, "location": location,
                     "reason": "opening", "quantity": int(quantity), "source": source,
                     "target": target}
                )  # fmt: skip
    if rows:
        op.bulk_insert(journal, rows)


def downgrade() -> None:
    op.get_bind().execute(
        sa.text(
            "DELETE FROM commercekit_stock_journal WHERE reason = 'opening' "
            "AND source = 'committed'"
        )
    )
