"""Names, printer columns and models of the four kinds: what the CRDs and kopf need to know."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from controller.api.app import App, AppSpec, AppStatus
from controller.api.block import Block, BlockSpec, BlockStatus
from controller.api.workflow import Workflow, WorkflowSpec, WorkflowStatus
from controller.api.workflowrun import WorkflowRun, WorkflowRunSpec, WorkflowRunStatus

GROUP = "blockflow.dev"
VERSION = "v1alpha1"
CATEGORY = "blockflow"


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    model: type[BaseModel]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    short_names: tuple[str, ...]
    description: str
    columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
_LIFECYCLE_COLUMNS = (
    PrinterColumn("Status", ".status.lifecycle.status", description="Lifecycle status."),
    PrinterColumn("Description", ".status.lifecycle.description", description="What is going on."),
)

APP = KindInfo(
    kind="App",
    plural="apps",
    model=App,
    spec_model=AppSpec,
    status_model=AppStatus,
    short_names=("bfapp",),
    description="An installation of an integration (e.g. our PostgreSQL server).",
    columns=(*_LIFECYCLE_COLUMNS, _AGE),
)

BLOCK = KindInfo(
    kind="Block",
    plural="blocks",
    model=Block,
    spec_model=BlockSpec,
    status_model=BlockStatus,
    short_names=("blk", "bfblock"),
    description="One managed thing (a database, a role, a bucket) that belongs to an App.",
    columns=(
        PrinterColumn("App", ".spec.app", description="The App that runs this Block."),
        PrinterColumn("Type", ".spec.type", description="Block type."),
        *_LIFECYCLE_COLUMNS,
        _AGE,
    ),
)

WORKFLOW = KindInfo(
    kind="Workflow",
    plural="workflows",
    model=Workflow,
    spec_model=WorkflowSpec,
    status_model=WorkflowStatus,
    short_names=("bfwf",),
    description="Event-triggered automation: a trigger plus ordered steps, with retries.",
    columns=(
        PrinterColumn("Phase", ".status.phase", description="Draft, Activated, Paused, ..."),
        _LIFECYCLE_COLUMNS[0],  # failed when an activation is refused, while Phase stays
        PrinterColumn("Version", ".status.version", "integer", "Workflow version."),
        PrinterColumn("Runs", ".status.runCount", "integer", "Runs started."),
        PrinterColumn("Last Run", ".status.lastRunAt", "date", "When the last run started."),
        _LIFECYCLE_COLUMNS[1],  # why (a refused activation names the field and the fix)
        _AGE,
    ),
)

WORKFLOW_RUN = KindInfo(
    kind="WorkflowRun",
    plural="workflowruns",
    model=WorkflowRun,
    spec_model=WorkflowRunSpec,
    status_model=WorkflowRunStatus,
    short_names=("wfr", "bfrun"),
    description="One durable execution of a Workflow.",
    columns=(
        PrinterColumn("Workflow", ".spec.workflowRef.name", description="The Workflow run."),
        PrinterColumn("State", ".status.state", description="Run state."),
        PrinterColumn("Started", ".status.startedAt", "date", "When the run started."),
        _AGE,
        PrinterColumn(
            "Message",
            '.status.conditions[?(@.type=="Ready")].message',
            description="What the run is doing or why it ended (-o wide).",
            priority=1,
        ),
    ),
)

ALL_KINDS: tuple[KindInfo, ...] = (APP, BLOCK, WORKFLOW, WORKFLOW_RUN)
