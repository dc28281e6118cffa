"""The three annotation readers on whatever JSON a file may hold: every object, list, number and
string of a VoTT, LabelMe or COCO file is either what the format puts there (with edge values:
huge and tiny numbers, names leading elsewhere) or an arbitrary JSON value. Reading and
rasterising end in a clean result (well-typed shapes, problems listed as text) or an
AnnotationError, never another exception.

Hypothesis runs derandomized with no example database, so every run tries the same inputs."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from training.datasets.annotations import AnnotationError, read_export, shapes_to_masks

CLASSES = ["caries", "filling"]
SETTINGS = settings(max_examples=250, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def mostly(common, rare, odds=4):
    """`common`, and one time in `odds` `rare` (plain one_of would pick each about as often)."""
    return st.integers(0, odds - 1).flatmap(lambda k: rare if k == odds - 1 else common)


leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
nested = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                      max_leaves=8)
anything = mostly(nested, leaf, 2)  # st.recursive alone gives mostly lists, rarely a lone number or string


def either(strategy):
    """What the format has there, or any JSON value in its place."""
    return mostly(strategy, anything, 4)


def obj(**fields):
    """The format's object with every field, with some, or any JSON value instead."""
    complete = st.fixed_dictionaries({k: either(v) for k, v in fields.items()})
    partial = st.fixed_dictionaries({}, optional={k: either(v) for k, v in fields.items()})
    return st.integers(0, 5).flatmap(lambda k: anything if k == 5 else partial if k == 4 else complete)


def items(strategy, min_size=1, max_size=4):
    return either(st.lists(strategy, min_size=min_size, max_size=max_size))


coordinate = mostly(st.integers(-5, 20) | st.floats(-5, 20),
                    st.floats() | st.integers() | st.sampled_from([1e308, -1.7e308, 2.0 ** 31, 5e-324, 10 ** 400]))
size = mostly(st.integers(1, 12), st.integers() | st.sampled_from([0, 10 ** 400, 2.0, 1e300]))
tag = st.sampled_from(["caries", "filling", "CARIES", ""]) | st.text(max_size=4)
name = st.sampled_from(["a.png", "../a.png", "/etc/a.png", "C:\\x\\a.png", "", ".", "..", "a\x00.png", "\ud800.png",
                        "x" * 300]) | st.text(max_size=8)
ident = st.integers(0, 2) | st.text(max_size=2)

labelme = st.fixed_dictionaries(
    {"shapes": items(obj(label=tag, points=items(either(st.lists(coordinate, min_size=2, max_size=2)), 2, 5),
                         shape_type=st.sampled_from(["polygon", "rectangle", "circle"])))},
    optional={"imagePath": either(name), "imageData": either(st.sampled_from(["iVBORw0KGgo=", "!!", ""])),
              "imageWidth": either(size), "imageHeight": either(size)})

region = obj(id=st.text(max_size=3), type=st.sampled_from(["RECTANGLE", "POLYGON", "POINT", "polygon"]),
             tags=items(tag, 0, 2), boundingBox=obj(left=coordinate, top=coordinate, width=coordinate, height=coordinate),
             points=items(obj(x=coordinate, y=coordinate), 2, 5))
asset = obj(asset=obj(name=name, path=name, size=obj(width=size, height=size)), regions=items(region, 0, 3))
vott = mostly(  # the project's export, or one of VoTT's per-asset files
    st.fixed_dictionaries({"assets": either(st.dictionaries(st.text(max_size=3), asset, min_size=1, max_size=3)
                                            | st.lists(asset, min_size=1, max_size=3))},
                          optional={"tags": items(obj(name=tag), 0, 3)}),
    st.fixed_dictionaries({"asset": obj(name=name, size=obj(width=size, height=size)), "regions": items(region, 0, 3)}))

run_length = obj(counts=st.lists(st.integers(-2, 30), max_size=6) | st.text(alphabet="0123abcoOP`", max_size=8),
                 size=st.lists(size, min_size=2, max_size=2))
coco = st.fixed_dictionaries(
    {"images": items(obj(id=ident, file_name=name, width=size, height=size), 1, 3),
     "annotations": items(obj(id=ident, image_id=ident, category_id=ident, bbox=items(coordinate, 0, 5),
                              segmentation=items(items(coordinate, 0, 8), 0, 2) | run_length), 1, 4)},
    optional={"categories": items(obj(id=ident, name=tag), 0, 3)})

image_size = st.tuples(st.integers(1, 40), st.integers(1, 40))  # often larger than the frame: coordinates scale up


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("annotation_properties")  # one file, rewritten by each example


def read_and_rasterise(folder, data, width_height):
    file = folder / "export.json"
    file.write_text(json.dumps(data))
    try:
        export = read_export(file)
    except AnnotationError as error:
        assert str(error).startswith("export.json ")
        return
    assert all(isinstance(t, str) for t in export.declared_tags)
    assert all(isinstance(kind, str) and all(isinstance(line, str) for line in lines)
               for kind, lines in export.problems.items())
    for image in export.images:
        assert isinstance(image.image, str) and (image.frame is None or min(image.frame) > 0)
        for shape in image.shapes:
            assert isinstance(shape.tags, list) and all(isinstance(t, str) for t in shape.tags)
            if shape.kind == "mask":
                assert shape.mask.dtype == bool and shape.mask.shape == image.frame[::-1]
            else:
                assert shape.points.ndim == 2 and shape.points.shape[1] == 2 and np.isfinite(shape.points).all()
        result = shapes_to_masks(image, width_height, CLASSES)
        assert result.classes.shape == width_height[::-1] and result.classes.max() <= len(CLASSES)
        assert all(isinstance(line, str) for lines in result.problems.values() for line in lines)


@SETTINGS
@given(data=labelme, width_height=image_size)
# Found while writing this test: a finite coordinate that overflows once scaled from a small frame.
@example(data={"shapes": [{"label": "caries", "points": [[0, 0], [1, 1e308], [2, 0]]}], "imageWidth": 1,
               "imageHeight": 1}, width_height=(9, 7))
def test_labelme_reader_on_any_json(folder, data, width_height):
    read_and_rasterise(folder, data, width_height)


@SETTINGS
@given(data=vott, width_height=image_size)
def test_vott_reader_on_any_json(folder, data, width_height):
    read_and_rasterise(folder, data, width_height)


@SETTINGS
@given(data=coco, width_height=image_size)
# An image that declares 100000 x 100000 pixels and a mask of that size: 9.3 GiB if decoded.
@example(data={"images": [{"id": 1, "file_name": "a.png", "width": 100000, "height": 100000}], "annotations": [
    {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [100000, 100000], "counts": [0, 1]}}]},
    width_height=(9, 7))
def test_coco_reader_on_any_json(folder, data, width_height):
    read_and_rasterise(folder, data, width_height)


@SETTINGS
@given(text=st.text(max_size=40) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_any_file_content_is_read_or_refused_with_an_annotation_error(folder, text):
    file = folder / "export.json"
    file.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        read_export(file)
    except AnnotationError as error:
        assert str(error).startswith("export.json ")


def test_json_nested_too_deep_for_the_parser_is_an_annotation_error(folder):
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AnnotationError, match="deep.json is not readable JSON: RecursionError"):
        read_export(folder / "deep.json")
