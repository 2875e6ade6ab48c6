"""Workload documents: a YAML or JSON source, or one decoded mapping, to configs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.documents.fields import FieldReader
from policy.documents.models import API_VERSION
from policy.documents.source import RawDocument, load_documents
from policy.errors import ErrorDetail, PolicyValidationError
from policy.workloads.agent import parse_agent
from policy.workloads.config import Workload
from policy.workloads.pipeline import parse_pipeline
from policy.workloads.values import read_optional_string

WORKLOAD_KINDS = ("Agent", "Pipeline")


def parse_workload_source(text: str, filename: str = "<source>") -> list[Workload]:
    """Every Agent/Pipeline document of a YAML or JSON source; all problems at once."""
    out: list[Workload] = []
    details: list[ErrorDetail] = []
    for raw in load_documents(text, filename):
        reader = FieldReader(raw)
        workload = _parse(reader)
        details.extend(reader.details)
        if workload is not None:
            out.append(workload)
    if details:
        raise PolicyValidationError(details)
    return out


def parse_workload(value: Mapping[str, Any], filename: str = "<request>") -> Workload:
    """One already-decoded document (an API body or a bundle entry); errors name the field."""
    raw = RawDocument(file=filename, index=0, body=dict(value), text="")
    reader = FieldReader(raw)
    workload = _parse(reader)
    if reader.details or workload is None:
        raise PolicyValidationError(
            reader.details or [plain_detail(filename, "not an Agent or Pipeline document")]
        )
    return workload


def _parse(reader: FieldReader) -> Workload | None:
    body = reader.mapping(
        reader.raw.body, (), required=("kind", "metadata", "spec"), optional=("apiVersion",)
    )
    if body is None:
        return None
    if "apiVersion" in body and body["apiVersion"] != API_VERSION:
        reader.error(
            ("apiVersion",), f"unsupported apiVersion {body['apiVersion']!r}; use {API_VERSION}"
        )
    kind = body.get("kind")
    if "kind" in body and kind not in WORKLOAD_KINDS:
        reader.error(("kind",), f"unknown kind {kind!r} (expected one of: Agent, Pipeline)")
        return None
    if "metadata" not in body or "spec" not in body or kind is None:
        return None
    metadata = reader.mapping(
        body["metadata"], ("metadata",), required=("name",), optional=("description",)
    )
    if metadata is None:
        return None
    name = reader.name(metadata.get("name"), ("metadata", "name"))
    description = read_optional_string(reader, metadata, ("metadata", "description"))
    if kind == "Agent":
        agent = parse_agent(reader, body["spec"], name or "", description)
        return agent if name else None
    pipeline = parse_pipeline(reader, body["spec"], name or "", description)
    return pipeline if name else None


def plain_detail(filename: str, message: str) -> ErrorDetail:
    """A detail naming the file only (no document, field or position)."""
    return ErrorDetail(
        file=filename, document=None, field=None, line=None, column=None, message=message
    )
