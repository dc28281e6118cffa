"""task.json is untrusted input: whatever it holds, reading it gives the metadata or a BundleError
naming the problem, never another exception (the app would stop at start) and never a server path."""

import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core import schema
from core.bundle import BundleError, read_metadata
from tasks import TASKS

FIXTURE = Path(__file__).parent / "fixtures" / "dog_breed_format_1" / "task.json"
VALID = json.loads(FIXTURE.read_text())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
keys = st.sampled_from(sorted({*VALID, "thresholds", "rotation", "age", "face", "activation", "max_labels",
                               "pretrained"}))


def read(folder: Path, metadata, metadata_schema=schema.TaskMetadata):
    (folder / "task.json").write_text(json.dumps(metadata, allow_nan=True))
    return read_metadata(folder, metadata_schema)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(changes=st.dictionaries(keys, json_values, max_size=3), task=st.sampled_from(TASKS))
@example(changes={"format_version": "1"}, task=TASKS[0])
@example(changes={"input": {"size": [100000, 100000]}}, task=TASKS[0])
@example(changes={"networks": {"classifier": "/etc/passwd"}}, task=TASKS[0])
def test_any_task_json_is_read_or_refused_with_a_bundle_error(tmp_path_factory, changes, task):
    folder = tmp_path_factory.mktemp("bundle")
    try:
        metadata = read(folder, {**VALID, **changes}, task.METADATA)
    except BundleError as error:
        assert str(folder) not in str(error)
        return
    assert isinstance(metadata, dict) and metadata["labels"]


def test_the_schema_refuses_what_the_app_must_not_trust(tmp_path):
    cases = {
        "format_version: input should be a valid integer (got '1')": {"format_version": "1"},
        "input.size.0: input should be less than or equal to 1024": {"input": {"size": [100000, 100000]}},
        "input.size.0: input should be greater than or equal to 8": {"input": {"size": [-3, 3]}},
        "networks.classifier: must name a file or folder inside the bundle": {"networks": {"classifier": "../x.keras"}},
        "networks.classifier: must name a file": {"networks": {"classifier": "/abs/x.keras"}},
        "labels: list should have at least 1 item": {"labels": []},
        "demo: input should be a valid boolean": {"demo": "yes"},
    }
    for message, change in cases.items():
        with pytest.raises(BundleError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read(tmp_path, {**VALID, **change})
    assert read(tmp_path, VALID)["labels"] == VALID["labels"]


def test_each_task_refuses_a_bundle_without_what_its_tab_reads(tmp_path):
    from tasks import age_gender, hashtags

    with pytest.raises(BundleError, match=r"thresholds\.per_label|thresholds: field required|thresholds\.global"):
        read(tmp_path, VALID, hashtags.METADATA)
    with pytest.raises(BundleError, match="rotation: field required; age: field required; face: field required"):
        read(tmp_path, VALID, age_gender.METADATA)
    tuned = {**VALID, "thresholds": {"global": 0.5, "per_label": {label: 0.5 for label in VALID["labels"][:-1]}}}
    with pytest.raises(BundleError, match="thresholds.per_label lacks 1 label"):
        read(tmp_path, tuned, hashtags.METADATA)


def test_a_network_through_a_link_out_of_the_bundle_is_refused(tmp_path):
    from core.bundle import network_location

    outside = tmp_path / "outside"
    outside.mkdir()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "net").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        network_location(bundle, "classifier", "net")
    assert network_location(bundle, "classifier", ".") == bundle.resolve()
