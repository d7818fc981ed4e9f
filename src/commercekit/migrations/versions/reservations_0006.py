"""Reservations: the stock watch keeps a position in the journal instead of marking rows.

Revision ID: reservations_0006
Revises: reservations_0005
Create Date: 2026-12-02

The journal's rows get the id of the transaction that wrote them (``txid``:
PostgreSQL's ``txid_current()``, 1 on SQLite), and the watch a position,
(txid, id), in place of the ``announced`` flag it set on every row. The
rows announced get txid 0, and the position the highest id announced;
those not announced (some may be below it: they committed after a higher
one was announced) get txid 1, after the position, so they are still
announced, and only once. Only those few rows are written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "reservations_0006"
down_revision = "reservations_0005"
branch_labels = None
depends_on = None

_TABLE = "commercekit_stock_journal"
_POSITION = "commercekit_stock_watch_position"
_UNANNOUNCED = "ix_commercekit_stock_journal_unannounced"
_BY_TXID = "ix_commercekit_stock_journal_txid"


def upgrade() -> None:
    bind = op.get_bind()
    position = op.create_table(
        _POSITION,
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("journal_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f(f"pk_{_POSITION}")),
    )
    with op.batch_alter_table(_TABLE) as table:  # SQLite too
        table.add_column(sa.Column("txid", sa.BigInteger(), nullable=False, server_default="0"))
    bind.execute(sa.text("UPDATE commercekit_stock_journal SET txid = 1 WHERE NOT announced"))
    last = bind.scalar(sa.text("SELECT max(id) FROM commercekit_stock_journal WHERE announced"))
    if last is not None:
        op.bulk_insert(position, [{"name": "stock", "txid": 0, "journal_id": last}])
    op.drop_index(_UNANNOUNCED, _TABLE)
    with op.batch_alter_table(_TABLE) as table:
        table.drop_column("announced")
        pg = bind.dialect.name == "postgresql"
        table.alter_column("txid", server_default=sa.text("txid_current()" if pg else "1"))
    op.create_index(_BY_TXID, _TABLE, ["txid", "id"])


def downgrade() -> None:
    bind = op.get_bind()
    op.drop_index(_BY_TXID, _TABLE)
    with op.batch_alter_table(_TABLE) as table:
        table.add_column(
            sa.Column("announced", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    bind.execute(
        sa.text(
            "UPDATE commercekit_stock_journal AS j SET announced = true"
            " WHERE EXISTS (SELECT 1 FROM commercekit_stock_watch_position AS p"
            " WHERE j.txid < p.txid OR (j.txid = p.txid AND j.id <= p.journal_id))"
        )
    )
    op.create_index(
        _UNANNOUNCED,
        _TABLE,
        ["id"],
        postgresql_where=sa.text("NOT announced"),
        sqlite_where=sa.text("NOT announced"),
    )
    with op.batch_alter_table(_TABLE) as table:
        table.drop_column("txid")
    op.drop_table(_POSITION)
