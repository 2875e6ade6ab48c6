"""Every ORM class is tenant-scoped or explicitly global, with a reason."""

from control_plane.db import models
from control_plane.db.base import Base, TenantScoped


def test_every_model_chooses_tenant_scope_or_global() -> None:
    mapped = {mapper.class_ for mapper in Base.registry.mappers}
    unclassified = {
        cls.__name__
        for cls in mapped
        if not issubclass(cls, TenantScoped) and cls not in models.GLOBAL_MODELS
    }
    assert not unclassified, (
        f"declare these TenantScoped or add them to GLOBAL_MODELS: {unclassified}"
    )
    both = {cls.__name__ for cls in models.GLOBAL_MODELS if issubclass(cls, TenantScoped)}
    assert not both


def test_tenant_scoped_tables_have_an_indexed_organization_id() -> None:
    for mapper in Base.registry.mappers:
        if issubclass(mapper.class_, TenantScoped):
            column = mapper.local_table.c.organization_id
            assert not column.nullable
            assert column.index
            assert [fk.column.table.name for fk in column.foreign_keys] == ["organizations"]
