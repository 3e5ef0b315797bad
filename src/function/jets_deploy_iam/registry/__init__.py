"""The registry: what each custom resource owns, which IAM cannot tell (groups take no tags)."""

from __future__ import annotations

from jets_deploy_iam.registry.model import GroupRecord, LastUpdate, ResourceRecord
from jets_deploy_iam.registry.store import (
    DynamoDBRegistry,
    MemoryRegistry,
    Registry,
    Stored,
    Unreadable,
    create_table,
)

__all__ = [
    "DynamoDBRegistry",
    "GroupRecord",
    "LastUpdate",
    "MemoryRegistry",
    "Registry",
    "ResourceRecord",
    "Stored",
    "Unreadable",
    "create_table",
]
