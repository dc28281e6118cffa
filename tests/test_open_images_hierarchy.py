"""training.open_images and Open Images' class hierarchy (bbox_labels_600_hierarchy.json):
--include-subclasses and --list-classes, against a loopback Flickr and an excerpt of the file."""

import hashlib
import json

import pytest
from support.open_images_server import (
    FakeFlickr,
    box_row,
    image_id,
    image_row,
    jpeg,
    readable,
    write_hierarchy,
    write_meta,
)
from test_open_images import FAST, HAMBURGER, PIZZA, RED, SANDWICH, TRAIN_BOXES

from training import open_images
from training.open_images.hierarchy import HIERARCHY_FILE

FOOD, FAST_FOOD, HOT_DOG, FRIES, SUB = "/m/02wbm", "/m/01_bhs", "/m/01b9xk", "/m/02y6n", "/m/06pcq"
DESSERT, BAKED, COOKIE, MUFFIN, CAKE, BREAD = "/m/0270h", "/m/052lwg6", "/m/021mn", "/m/01tcjp", "/m/0fszt", "/m/09728"
PERSON, BODY, FACE, MAN = "/m/01g317", "/m/02p0tk3", "/m/0dzct", "/m/04yx4"
NAMES = {FOOD: "Food", FAST_FOOD: "Fast food", HOT_DOG: "Hot dog", FRIES: "French fries", SUB: "Submarine sandwich",
         DESSERT: "Dessert", BAKED: "Baked goods", COOKIE: "Cookie", MUFFIN: "Muffin", CAKE: "Cake", BREAD: "Bread",
         PIZZA: "Pizza", SANDWICH: "Sandwich", HAMBURGER: "Hamburger", PERSON: "Person", BODY: "Human body",
         FACE: "Human face", MAN: "Man"}


def node(label, subcategories=(), parts=()):
    return {"LabelName": label, **({"Part": list(parts)} if parts else {}),
            **({"Subcategory": list(subcategories)} if subcategories else {})}


# An excerpt of bbox_labels_600_hierarchy.json as distributed, same labels and nesting: Hamburger and
# Submarine sandwich are Subcategories of Sandwich; Muffin and Cookie sit under both Dessert and
# Baked goods (the file repeats their nodes); Person has Human body as a Part, and Man as a Subcategory.
HIERARCHY = node("/m/0bl9f", [
    node(FOOD, [node(FAST_FOOD, [node(HOT_DOG), node(FRIES)]),
                node(DESSERT, [node(MUFFIN), node(COOKIE), node(CAKE)]),
                node(BAKED, [node(MUFFIN), node(COOKIE), node(BREAD)]),
                node(PIZZA),
                node(SANDWICH, [node(HAMBURGER), node(SUB)])]),
    node(PERSON, [node(MAN)], parts=[node(BODY, parts=[node(FACE)])])])


FOOD_PHOTOS = {"h1": [HAMBURGER, SUB], "h2": [SANDWICH, FACE, MAN], "h3": [COOKIE, CAKE, BREAD, MUFFIN], "h4": [HOT_DOG, PERSON]}


class FoodWorld:
    """FOOD_PHOTOS (a box per listed label, and a second Hot dog in h4) served on loopback, and
    the hierarchy beside the CSVs."""

    def __init__(self, root, flickr, hierarchy=True):
        self.root = root
        boxes, images = [], []
        for image, labels in FOOD_PHOTOS.items():
            url = flickr.serve(f"/{image}.jpg", jpeg(size=(64, 48), rects=[((8 * k, 0, 8 * k + 8, 8), RED) for k in range(len(labels))]))
            boxes += [box_row(image_id(image), label, (8 * k, 0, 8 * k + 8, 8)) for k, label in enumerate(labels)]
            images.append(image_row(image_id(image), url))
        self.meta = write_meta(root / "meta", NAMES, {TRAIN_BOXES: boxes + [box_row(image_id("h4"), HOT_DOG, (40, 8, 60, 40))]},
                               {"train-images-boxable-with-rotation.csv": images})
        if hierarchy:
            write_hierarchy(self.meta, HIERARCHY)

    def build(self, *options, out="out"):
        return open_images.main(["--meta", str(self.meta), "--out", str(self.root / out), *FAST, *options])

    def files(self, out="out"):
        return sorted(readable(str(p.relative_to(self.root / out / "images_cropped"))) for p in (self.root / out / "images_cropped").rglob("*.jpg"))

    def manifest(self, out="out"):
        return readable(json.loads((self.root / out / "manifest.json").read_text()))


@pytest.fixture
def food(tmp_path):
    with FakeFlickr() as flickr:
        yield FoodWorld(tmp_path, flickr)


def test_include_subclasses_gathers_a_class_and_what_is_under_it_the_most_specific_class_winning(food):
    food.build("--classes", "Hamburger", "Sandwich")
    assert food.files() == ["hamburger/h1_0.jpg", "sandwich/h2_0.jpg"]  # exact names without the option
    assert "subclasses" not in food.manifest()["classes"][0] and HIERARCHY_FILE not in food.manifest()["sources"]

    food.build("--classes", "Hamburger", "Sandwich", "--include-subclasses")
    # Hamburger is under Sandwich: its box stays in hamburger; the submarine sandwich joins sandwich.
    assert food.files() == ["hamburger/h1_0.jpg", "sandwich/h1_1.jpg", "sandwich/h2_0.jpg"]
    manifest = food.manifest()
    assert manifest["classes"] == [
        {"name": "Hamburger", "label": HAMBURGER, "folder": "hamburger", "subclasses": []},
        {"name": "Sandwich", "label": SANDWICH, "folder": "sandwich", "subclasses": [{"name": "Submarine sandwich", "label": SUB}]}]
    assert manifest["sources"][HIERARCHY_FILE]["sha256"] == hashlib.sha256((food.meta / HIERARCHY_FILE).read_bytes()).hexdigest()
    assert {c["file"]: c["label"] for c in manifest["crops"]}["sandwich/h1_1.jpg"] == SUB  # each crop keeps its own label

    food.build("--classes", "Food", "Sandwich", "--include-subclasses")
    assert food.files() == ["food/h3_0.jpg", "food/h3_1.jpg", "food/h3_2.jpg", "food/h3_3.jpg", "food/h4_0.jpg", "food/h4_1.jpg",
                            "sandwich/h1_0.jpg", "sandwich/h1_1.jpg", "sandwich/h2_0.jpg"]  # each box once
    # (k counts an image's boxes of the wanted labels: the Person box of h4 is not one.)


def test_a_label_under_two_requested_classes_that_do_not_nest_is_left_out(food, capsys):
    food.build("--classes", "Dessert", "Baked goods", "--include-subclasses")
    # h3 holds Cookie, Cake, Bread, Muffin: Cookie and Muffin are both dessert and baked goods.
    assert food.files() == ["baked_goods/h3_1.jpg", "dessert/h3_0.jpg"]
    assert food.manifest()["left_out_subclasses"] == [{"name": "Muffin", "label": MUFFIN, "under": ["baked_goods", "dessert"]},
                                                      {"name": "Cookie", "label": COOKIE, "under": ["baked_goods", "dessert"]}]
    assert "Left out Cookie (/m/021mn): it is under both baked_goods and dessert" in capsys.readouterr().err


def test_parts_are_not_subclasses(food):
    food.build("--classes", "Person", "--include-subclasses")
    assert food.files() == ["person/h2_0.jpg", "person/h4_0.jpg"]  # Man yes; Human face (a part of a body) no
    assert {c["file"]: c["label"] for c in food.manifest()["crops"]} == {"person/h2_0.jpg": MAN, "person/h4_0.jpg": PERSON}
    assert food.manifest()["classes"][0]["subclasses"] == [{"name": "Man", "label": MAN}]


def test_list_classes_prints_the_tree_below_a_class_with_box_counts(food, capsys):
    assert food.build("--list-classes", "food")["tree"] == [
        "Food (/m/02wbm): 0 boxes, 9 boxes with subclasses",
        "  Fast food (/m/01_bhs): 0 boxes, 2 boxes with subclasses",
        "    Hot dog (/m/01b9xk): 2 boxes",
        "    French fries (/m/02y6n): 0 boxes",
        "  Dessert (/m/0270h): 0 boxes, 3 boxes with subclasses",
        "    Muffin (/m/01tcjp): 1 box",
        "    Cookie (/m/021mn): 1 box",
        "    Cake (/m/0fszt): 1 box",
        "  Baked goods (/m/052lwg6): 0 boxes, 3 boxes with subclasses",
        "    Muffin (/m/01tcjp): 1 box",
        "    Cookie (/m/021mn): 1 box",
        "    Bread (/m/09728): 1 box",
        "  Pizza (/m/0663v): 0 boxes",
        "  Sandwich (/m/0l515): 1 box, 3 boxes with subclasses",
        "    Hamburger (/m/0cdn1): 1 box",
        "    Submarine sandwich (/m/06pcq): 1 box"]
    assert "    Submarine sandwich (/m/06pcq): 1 box" in capsys.readouterr().out
    assert food.build("--list-classes", "Person")["tree"] == [
        "Person (/m/01g317): 1 box, 2 boxes with subclasses",
        "  Man (/m/04yx4): 1 box",
        "  [part] Human body (/m/02p0tk3): 0 boxes",
        "    [part] Human face (/m/0dzct): 1 box"]
    whole = open_images.main(["--meta", str(food.meta), "--list-classes", "--quiet"])["tree"]
    assert whole[0] == "Entity (/m/0bl9f): 0 boxes, 11 boxes with subclasses" and len(whole) == 21
    assert not (food.root / "out").exists()  # listing builds nothing


def test_hierarchy_options_without_the_file_or_with_a_broken_one_say_what_is_wrong(tmp_path):
    with FakeFlickr() as flickr:
        plain = FoodWorld(tmp_path / "plain", flickr, hierarchy=False)
        assert plain.build("--classes", "Sandwich")["counts"] == {"sandwich": 1}  # today's behaviour without the file
        for option, needs in ((["--classes", "Sandwich", "--include-subclasses"], "--include-subclasses"),
                              (["--list-classes", "Food"], "--list-classes")):
            with pytest.raises(SystemExit, match=rf"{needs} needs Open Images' class hierarchy: put bbox_labels_600_hierarchy\.json"):
                plain.build(*option)
        (plain.meta / HIERARCHY_FILE).write_text('{"LabelName": "/m/0bl9f", "Subcategory": [')
        with pytest.raises(SystemExit, match=r"bbox_labels_600_hierarchy\.json is not valid JSON"):
            plain.build("--classes", "Sandwich", "--include-subclasses")
        (plain.meta / HIERARCHY_FILE).write_text('{"LabelName": "/m/0bl9f", "Subcategory": [{"Label": "/m/02wbm"}]}')
        with pytest.raises(SystemExit, match=r"Subcategory 0 of /m/0bl9f is not a node with a LabelName"):
            plain.build("--list-classes")
        (plain.meta / HIERARCHY_FILE).write_text(json.dumps(node("/m/0bl9f", [node(FOOD)])))
        with pytest.raises(SystemExit, match=r"Man \(/m/04yx4\) is not in bbox_labels_600_hierarchy\.json"):
            plain.build("--list-classes", "man")
