"""App: an installation of an integration, served by a handler."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from controller.api.common import (
    ApiModel,
    EntityStatus,
    FreeFormObject,
    ObjectMeta,
    SecretKeyReference,
    SecretReference,
)

#: Name of an in-process handler registered under the ``blockflow.handlers`` entry point group.
PythonHandlerName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
]


class HttpHandler(ApiModel):
    """A handler served over HTTP, in any language: the controller POSTs `<url>/<operation>`."""

    url: str = Field(
        min_length=1,
        pattern=r"^https?://",
        description="Base URL of the handler, e.g. http://storage-handler.tools.svc:8080.",
    )
    timeout_seconds: int = Field(
        default=10, ge=1, le=300, description="Timeout of one handler call, in seconds."
    )
    secret_ref: SecretKeyReference | None = Field(
        default=None,
        description=(
            "Secret whose key signs requests: X-Blockflow-Signature is the HMAC-SHA256 of the "
            "body with this key."
        ),
    )


class HandlerRef(ApiModel):
    """Which handler runs the App's lifecycle: exactly one of `http` or `python`."""

    http: HttpHandler | None = Field(default=None, description="A handler served over HTTP.")
    python: PythonHandlerName | None = Field(
        default=None,
        description="An in-process handler registered under the blockflow.handlers entry point.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> HandlerRef:
        if (self.http is None) == (self.python is None):
            raise ValueError("spec.handler: set exactly one of `http` or `python`")
        return self


class ConfigFromSource(ApiModel):
    """A source of secret configuration merged into `config` and never echoed."""

    secret_ref: SecretReference = Field(
        description="A Secret whose keys are merged into the App's config."
    )


class AppSpec(ApiModel):
    """Desired state of an App."""

    handler: HandlerRef = Field(description="The handler that implements this App.")
    config: FreeFormObject = Field(
        default_factory=dict,
        description="Free-form configuration, validated by the handler's schema.",
    )
    config_from: list[ConfigFromSource] = Field(
        default_factory=list,
        description="Secrets whose keys are merged into config; their values are never echoed.",
    )


class AppStatus(EntityStatus):
    """Observed state of an App."""


class App(ApiModel):
    """An installation of an integration (e.g. our PostgreSQL server)."""

    api_version: Literal["blockflow.dev/v1alpha1"] = "blockflow.dev/v1alpha1"
    kind: Literal["App"] = "App"
    metadata: ObjectMeta
    spec: AppSpec
    status: AppStatus = Field(default_factory=AppStatus)
