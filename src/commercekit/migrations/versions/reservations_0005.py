"""Reservations: the stock journal, opened with the levels the ledger has, and its watch.

Revision ID: reservations_0005
Revises: reservations_0004
Create Date: 2026-12-02

Each SKU and location the ledger knows gets OPENING rows: its units added
(to available), those its pending reservations hold, and those it counts
sold (as committed; ``orders_0004`` moves the orders' shipped and returned
ones on), so the journal sums to the ledger from its first row.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "reservations_0005"
down_revision = "reservations_0004"
branch_labels = None
depends_on = None

_TABLE = "commercekit_stock_journal"
_DEFAULT_LOCATION = "default"


def _opening(
    sku: str, location: str, units: int, source: str | None, target: str
) -> dict[str, Any]:
    return {
        "at": dt.datetime.now(dt.UTC),
        "sku": sku,
        "location": location,
        "reason": "opening",
        "quantity": units,
        "source": source,
        "target": target,
    }


def _held(lines: Any, allocations: Any) -> list[tuple[str, str, int]]:
    """Where a pending reservation's units are, from its stored lines and allocations."""
    if isinstance(lines, str):  # SQLite's JSON comes back as text through a raw select
        lines = json.loads(lines)
    if isinstance(allocations, str):
        allocations = json.loads(allocations)
    if allocations:
        return [(a[0], a[1], int(a[2])) for a in allocations]
    return [(sku, _DEFAULT_LOCATION, int(q)) for sku, q in lines]


def upgrade() -> None:
    table = op.create_table(
        _TABLE,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sku", sa.String(200), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(140), nullable=True),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(16), nullable=True),
        sa.Column("target", sa.String(16), nullable=True),
        sa.Column("announced", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_commercekit_stock_journal_sku_location", _TABLE, ["sku", "location", "id"])
    op.create_index("ix_commercekit_stock_journal_reference", _TABLE, ["reference"])
    op.create_index(
        "ix_commercekit_stock_journal_order_id",
        _TABLE,
        ["order_id"],
        postgresql_where=sa.text("order_id IS NOT NULL"),
        sqlite_where=sa.text("order_id IS NOT NULL"),
    )
    op.create_index(
        "ix_commercekit_stock_journal_unannounced",
        _TABLE,
        ["id"],
        postgresql_where=sa.text("NOT announced"),
        sqlite_where=sa.text("NOT announced"),
    )
    op.create_table(
        "commercekit_stock_watch",
        sa.Column("sku", sa.String(200), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("low", sa.BigInteger(), nullable=True),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in ("available", "held", "committed", "shipped", "damaged", "written_off")
        ),
        sa.Column("out", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("sku", "location", name=op.f("pk_commercekit_stock_watch")),
    )

    bind = op.get_bind()
    held: dict[tuple[str, str], int] = {}
    pending = bind.execute(
        sa.text("SELECT lines, allocations FROM commercekit_reservations WHERE status = 'PENDING'")
    )
    for lines, allocations in pending:
        for sku, location, units in _held(lines, allocations):
            held[sku, location] = held.get((sku, location), 0) + units
    rows = []
    stock = bind.execute(sa.text("SELECT sku, location, added, sold FROM commercekit_stock"))
    for sku, location, added, sold in stock:
        if added:
            rows.append(_opening(sku, location, int(added), None, "available"))
        if sold:
            rows.append(_opening(sku, location, int(sold), "available", "committed"))
        if held.get((sku, location)):
            rows.append(_opening(sku, location, held.pop((sku, location)), "available", "held"))
    for (sku, location), units in held.items():  # held beyond a row (backordered)
        rows.append(_opening(sku, location, units, "available", "held"))
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("commercekit_stock_watch")
    op.drop_index("ix_commercekit_stock_journal_unannounced", _TABLE)
    op.drop_index("ix_commercekit_stock_journal_order_id", _TABLE)
    op.drop_index("ix_commercekit_stock_journal_reference", _TABLE)
    op.drop_index("ix_commercekit_stock_journal_sku_location", _TABLE)
    op.drop_table(_TABLE)
