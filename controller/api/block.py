"""Block: one managed thing that belongs to an App."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from controller.api.common import ApiModel, EntityStatus, FreeFormObject, ObjectMeta, ObjectName


class DeletionPolicy(StrEnum):
    """What happens to the external thing when the Block is deleted."""

    DELETE = "Delete"
    ORPHAN = "Orphan"


class BlockSpec(ApiModel):
    """Desired state of a Block."""

    app: ObjectName = Field(description="Name of the App (same namespace) whose handler runs it.")
    type: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="A block type that the App's handler offers, e.g. bucket.",
    )
    config: FreeFormObject = Field(
        default_factory=dict,
        description=(
            "Free-form configuration, validated by the block type's schema. Any value may be "
            "{signalRef: {block: <name>, signal: <key>}} (or app: instead of block:)."
        ),
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        description="Delete runs the handler's drain on deletion; Orphan skips it.",
    )


class BlockStatus(EntityStatus):
    """Observed state of a Block."""


class Block(ApiModel):
    """One managed thing (a database, a role, a bucket) that belongs to an App."""

    api_version: Literal["blockflow.dev/v1alpha1"] = "blockflow.dev/v1alpha1"
    kind: Literal["Block"] = "Block"
    metadata: ObjectMeta
    spec: BlockSpec
    status: BlockStatus = Field(default_factory=BlockStatus)
