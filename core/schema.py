"""task.json's schema: what a bundle's metadata must hold, checked whenever a bundle is read.

A bundle is untrusted input, even our own once it has been downloaded: anyone can publish a Hub
repo. Every key the app reads is declared here with its type and range, so a bundle that lies
(a string where a number goes, a network file outside its folder, an input of 100000 pixels a
side) is refused with one line naming the key, and the app goes on serving the other tabs.

`TaskMetadata` holds what every bundle has. A task whose tab reads more keys declares a subclass
(tasks/<task>.py: `Metadata`), and only that task's bundles must have them. Keys nobody declares
are kept as they are (`extra="allow"`): they are for people (metrics, provenance).

Types are strict where a wrong type would change behaviour rather than fail: `"format_version":
"1"` is refused, not read as 1.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePosixPath
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)

# The largest input side a bundle may declare: a network's input is made of this many pixels
# squared, for every request (the largest we train, EfficientNetB3, takes 300).
MAX_INPUT_SIDE = 1024
MAX_LABELS = 100_000


def _plain_path(value: str) -> str:
    """A network's place in its bundle: "." (the bundle root), a folder or a `.keras` file inside
    it, named relatively with plain names: no absolute path, no "..", no backslash."""
    path = PurePosixPath(value)
    if not value or "\\" in value or "\0" in value or path.is_absolute() or ".." in path.parts \
            or any(part.startswith("~") for part in path.parts):
        raise ValueError("must name a file or folder inside the bundle (a relative name without '..')")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Label = Annotated[str, Field(min_length=1, max_length=200)]
Number = Annotated[float, AfterValidator(_finite)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Side = Annotated[StrictInt, Field(ge=8, le=MAX_INPUT_SIDE)]
NetworkPath = Annotated[str, Field(max_length=200), AfterValidator(_plain_path)]


class Schema(BaseModel):
    """A part of task.json: undeclared keys kept, declared ones checked; no coercion of text to numbers."""

    model_config = ConfigDict(extra="allow", strict=True)


class Input(Schema):
    size: tuple[Side, Side]  # height, width
    channels: Literal[3] = 3


class Thresholds(Schema):
    global_: Probability | None = Field(None, alias="global")
    per_label: dict[Label, Probability] = {}


class TaskMetadata(Schema):
    """What every bundle's task.json holds. A task's subclass names the networks its tab runs."""

    required_networks: ClassVar[tuple[str, ...]] = ()

    task: Name
    format_version: Annotated[StrictInt, Field(ge=1)]
    networks: dict[Name, NetworkPath] = Field(min_length=1)
    labels: list[Label] = Field(min_length=1, max_length=MAX_LABELS)
    input: Input
    preprocessing: dict
    thresholds: Thresholds = Thresholds()
    metrics: dict
    provenance: dict
    demo: StrictBool = False
    pretrained: dict | None = None  # where published weights came from (package, version, licence, hash)

    @model_validator(mode="after")
    def _has_its_networks(self):
        missing = [name for name in self.required_networks if name not in self.networks]
        if missing:
            raise ValueError(f"networks lacks {', '.join(missing)}, which this tab runs")
        return self


class Tuned(Thresholds):
    """Thresholds tuned on validation: the global one is there."""

    global_: Probability = Field(alias="global")


class ClassifierMetadata(TaskMetadata):
    """A classifier's bundle (dog breed, sandwich): one network, softmax over the labels."""

    required_networks = ("classifier",)


class MultiLabelMetadata(ClassifierMetadata):
    """A multi-label classifier's bundle: a tuned threshold overall and one per label."""

    thresholds: Tuned
    max_labels: Annotated[StrictInt, Field(ge=1, le=1000)] = 10

    @model_validator(mode="after")
    def _a_threshold_per_label(self):
        missing = [label for label in self.labels if label not in self.thresholds.per_label]
        if missing:
            raise ValueError(f"thresholds.per_label lacks {len(missing)} label(s), e.g. {missing[0]!r}")
        return self


class BundleSchemaError(ValueError):
    """task.json does not follow its schema; the message names the keys, never a path on disk."""


def validate(metadata: dict, schema: type[TaskMetadata] = TaskMetadata) -> TaskMetadata:
    """`metadata` (task.json, parsed) checked against `schema`; BundleSchemaError naming the first
    few problems otherwise. Checked as JSON (arrays are tuples there), whatever Python built it."""
    if not isinstance(metadata, dict):
        raise BundleSchemaError("task.json must hold a JSON object")
    try:
        return schema.model_validate_json(json.dumps(metadata))
    except ValidationError as error:
        problems = [f"{'.'.join(str(part) for part in item['loc']) or 'task.json'}: {_message(item)}"
                    for item in error.errors(include_url=False, include_context=False)]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BundleSchemaError("; ".join(problems[:3]) + more) from None


def _message(item: dict) -> str:
    """Pydantic's message, with the offending value when it is short (never a long blob)."""
    message = item["msg"].removeprefix("Value error, ")
    value = item.get("input")
    if item["type"] != "missing" and isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 40:
        message += f" (got {value!r})"
    return message.lower() if message[:1].isupper() and message[1:2].islower() else message
