"""Alembic environment: always handed a live connection by control_plane.db.migrate."""

from alembic import context

from control_plane.db import models  # noqa: F401  (registers every table on the metadata)
from control_plane.db.base import Base
from control_plane.db.partitions import include_object

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `kaizen-studio db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # Decision-log partitions are made at run time, not declared: leave them out of autogenerate.
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
