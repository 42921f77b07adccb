"""The Blockflow API: pydantic models for every custom resource.

These models are the single source of truth: the CRDs in ``crds/`` are
generated from them (``make crds``), and the controller parses objects with them.
"""

from controller.api.app import App, AppSpec, AppStatus
from controller.api.block import Block, BlockSpec, BlockStatus
from controller.api.kinds import ALL_KINDS, GROUP, VERSION, KindInfo
from controller.api.workflow import Workflow, WorkflowSpec, WorkflowStatus
from controller.api.workflowrun import WorkflowRun, WorkflowRunSpec, WorkflowRunStatus

__all__ = [
    "ALL_KINDS",
    "GROUP",
    "VERSION",
    "App",
    "AppSpec",
    "AppStatus",
    "Block",
    "BlockSpec",
    "BlockStatus",
    "KindInfo",
    "Workflow",
    "WorkflowRun",
    "WorkflowRunSpec",
    "WorkflowRunStatus",
    "WorkflowSpec",
    "WorkflowStatus",
]
