"""A real browser: Debian's chromium, driven by Playwright, against the running app."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from conftest import running_app
from PIL import Image

from core.ui import HEATMAP_LABEL
from tasks import TASKS

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Without these, Chromium keeps trying to reach Google's services, which this network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Whether an element lies wholly inside its component's block (not cut off by it).
INSIDE_ITS_BLOCK = """element => { const block = element.closest('.block').getBoundingClientRect();
    const box = element.getBoundingClientRect();
    return box.top >= block.top && box.bottom <= block.bottom && box.left >= block.left && box.right <= block.right; }"""


def run_example(page, tab: str, button: str, index: int = 0):
    """Open a tab, load one of its examples (the first by default) into the image input and press its button."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name=tab).click()
    # The examples' own gallery: an output gallery's thumbnails are buttons too.
    example = page.locator("div.gallery > button.gallery-item").locator("visible=true").nth(index)
    source = example.locator("img").first.get_attribute("src")
    example.click()
    # Loading an example is a round trip to the server: pressed sooner, the button sends no picture.
    expect(page.locator(f"[data-testid='image'] img[src='{source}']").locator("visible=true").first).to_be_visible()
    page.get_by_role("button", name=button).click()


@pytest.fixture(scope="module")
def served(dog_bundle, hashtag_bundle, age_gender_trained, caries_bundle, tmp_path_factory):
    """One app for this module's browser tests: the dog-breed tab on a demo model, hashtags, age &
    gender and caries on trained ones; flags in a folder of their own. Yields (url, models root,
    flag folder)."""
    from test_age_gender import astronaut

    root = tmp_path_factory.mktemp("browser") / "models"
    demo = root / "demo" / "dog_breed"
    shutil.copytree(dog_bundle, demo)
    metadata = json.loads((demo / "task.json").read_text())
    (demo / "task.json").write_text(json.dumps({**metadata, "demo": True}))  # as training.demo marks them
    shutil.copytree(age_gender_trained[0], root / "age_gender")
    shutil.copytree(caries_bundle, root / "caries")
    shutil.copytree(hashtag_bundle, root / "hashtags")
    # The age & gender tab's first examples: a picture without a face, and a real tilted face.
    ramp = np.tile(np.linspace(0, 255, 240, dtype=np.uint8), (180, 1))
    Image.fromarray(ramp).convert("RGB").save(root / "age_gender" / "examples" / "00_no_face.png")
    astronaut(25)[0].save(root / "age_gender" / "examples" / "01_astronaut_turned_25.png")
    flag_dir = root.parent / "flags"
    with running_app(root, env={"FLAG_DIR": str(flag_dir)}) as url:
        yield url, root, flag_dir


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "install Debian's chromium (scripts/test.sh does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_every_tab_opens_and_the_examples_run(served, browser, tmp_path):
    from playwright.sync_api import expect

    url, root, _ = served
    demo = root / "demo" / "dog_breed"
    caries_bundle = root / "caries"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(url)

    for task in TASKS:
        page.get_by_role("tab", name=task.TITLE).click()
        expect(page.get_by_text(task.DESCRIPTION)).to_be_visible()

    run_example(page, "Dog breed", "Identify the breed")
    expect(page.get_by_text("Demo model trained on synthetic data")).to_be_visible()
    label = page.get_by_test_id("label").locator("visible=true")
    breeds = json.loads((demo / "task.json").read_text())["labels"]
    expect(label.locator("h2, .output-class").first).to_have_text(re.compile("|".join(breeds)), timeout=30_000)

    # Age & gender: the annotated photo, the straightened crop whole with its caption, both tilts,
    # gender, "NN ± M years", and the faces JSON.
    page.get_by_role("tab", name="Age & gender").click()
    expect(page.get_by_role("textbox", name="Face 1: tilt (degrees, counter-clockwise)")).to_have_value("")
    run_example(page, "Age & gender", "Estimate gender and age")
    no_face = page.get_by_text("No face found").locator("visible=true")
    expect(no_face.first).to_be_visible(timeout=30_000)
    run_example(page, "Age & gender", "Estimate gender and age", index=1)
    expect(no_face).to_have_count(0, timeout=30_000)  # the notice does not outlive its result
    expect(page.get_by_text(re.compile(r"\d+ ± \d+ years")).first).to_be_visible()
    label = page.get_by_test_id("label").locator("visible=true")
    expect(label.locator("h2, .output-class").first).to_have_text(re.compile("Female|Male"))
    expect(page.get_by_role("textbox", name="Face 1: tilt (degrees, counter-clockwise)")).to_have_value(
        re.compile(r"eyes \+2\d\.\d°, network [+-]\d+\.\d°; straightened by the network"))
    crop = page.get_by_role("img", name=re.compile(r"Face 1: [+-]\d+°")).first
    expect(crop).to_be_visible()
    # The whole crop inside its gallery (a single face was once stretched and cut to its eyes)...
    assert crop.evaluate(INSIDE_ITS_BLOCK), crop.bounding_box()
    # ... and its caption not cut off.
    caption = page.locator(".caption-label").locator("visible=true").first
    expect(caption).to_have_text(re.compile(r"^Face 1: [+-]\d+°$"))
    assert caption.evaluate("label => label.scrollWidth <= label.clientWidth")
    expect(page.get_by_text('"tilt_eyes"').first).to_be_visible()
    expect(page.get_by_text('"confidence"').first).to_be_visible()
    page.get_by_role("radio", name=re.compile("line through the eyes")).check()
    expect(page.get_by_role("textbox", name="Face 1: tilt (degrees, counter-clockwise)")).to_have_value(
        re.compile("straightened by the eyes"), timeout=30_000)

    # Caries: the overlay with its legend, and the area table.
    run_example(page, "Caries segmentation", "Find the lesions")
    expect(page.get_by_role("textbox", name="Summary")).to_have_value(re.compile("% of the image"), timeout=30_000)
    painted = page.locator("img[src*='gradio_api/file=']").locator("visible=true")
    expect(painted.first).to_be_visible()
    labels = json.loads((caries_bundle / "task.json").read_text())["labels"]
    expect(page.get_by_text(f"■ {labels[0]}").locator("visible=true").first).to_be_visible()  # the legend
    expect(page.get_by_role("grid", name="Area per class")).to_contain_text(labels[0])
    assert page.locator(".toast-body.error, [data-testid='toast-body']").count() == 0
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    if os.environ.get("SCREENSHOT"):
        shutil.copy(tmp_path / "app.png", os.environ["SCREENSHOT"])

    # The API page lists the age & gender endpoint's faces output. (It also asks for
    # /gradio_api/mcp/schema, a 404 without an MCP server: Gradio's own request, not counted.)
    app_errors = list(errors)
    page.get_by_text("Use via API").click()
    expect(page.get_by_text('The output value that appears in the "faces" Json component.')).to_be_visible()
    page.close()
    assert app_errors == []


def test_interpret_and_flag_a_dog_photo(served, browser, dogs_data, tmp_path):
    """Upload, identify, Interpret: the heatmap appears; pick the right breed, Flag: the page confirms
    and the flag is on disk with the photo's bytes."""
    from playwright.sync_api import expect

    url, root, flag_dir = served
    photo = tmp_path / "chihuahua.png"  # enlarged, so that the heatmap reads on the page (docs/interpret.png)
    small = Image.open(sorted((dogs_data / "Images" / "n02085620-Chihuahua").glob("*.jpg"))[2])
    small.resize((small.width * 3, small.height * 3), Image.Resampling.BICUBIC).save(photo)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.locator("input[type=file]").first.set_input_files(str(photo))
    # The upload is a round trip to the server: pressed sooner, the button sends no picture.
    expect(page.locator("[data-testid='image'] img").locator("visible=true").first).to_be_visible()
    page.get_by_role("button", name="Identify the breed").click()
    label = page.get_by_test_id("label").locator("visible=true")
    expect(label.locator("h2, .output-class").first).to_have_text(re.compile(r"\w"), timeout=30_000)

    page.get_by_role("button", name="Interpret").locator("visible=true").click()
    heatmap = page.locator(".block").filter(has_text=HEATMAP_LABEL).locator("img").locator("visible=true")
    expect(heatmap.first).to_be_visible(timeout=30_000)
    assert heatmap.first.evaluate("img => img.naturalWidth") == Image.open(photo).width

    expect(page.get_by_text("on this server").locator("visible=true").first).to_be_visible()
    page.get_by_label("The right label (optional)").locator("visible=true").click()
    page.get_by_role("option", name="Chihuahua").click()
    page.get_by_role("button", name="Flag", exact=True).locator("visible=true").click()
    expect(page.get_by_text("Flagged, thank you").first).to_be_visible(timeout=30_000)
    if os.environ.get("INTERPRET_SCREENSHOT"):  # docs/interpret.png
        page.get_by_role("tabpanel").locator("visible=true").first.screenshot(path=os.environ["INTERPRET_SCREENSHOT"])
    [line] = [json.loads(line) for line in (flag_dir / "dog_breed" / "metadata.jsonl").read_text().splitlines()]
    assert line["correction"] == "Chihuahua" and line["origin"] == "demo bundle dog_breed"  # no server path
    assert (flag_dir / "dog_breed" / line["file_name"]).read_bytes() == photo.read_bytes()
    page.close()


def test_letting_go_of_the_threshold_updates_the_hashtags(served, browser):
    """The result follows the slider when the user lets go of it, without pressing the button again:
    at 0 every tag shown passes, at 1 none does."""
    from playwright.sync_api import expect

    url, _, _ = served
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    run_example(page, "Hashtags", "Suggest hashtags")
    # The read-only text box has no accessible name of its own: find it by its block's label.
    tags = page.locator(".block").filter(has_text="Hashtags to copy").locator("textarea").locator("visible=true")
    labels = page.get_by_test_id("label").locator("visible=true")
    expect(labels.locator("h2, .output-class").first).to_have_text(re.compile(r"\w"), timeout=30_000)
    slider = page.locator("input[type=range]").locator("visible=true").first

    def drag_to(fraction: float):  # as a person does: press on the thumb, move, let go
        box = slider.bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * float(slider.evaluate("e => (e.value - e.min) / (e.max - e.min)")), y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * fraction, y, steps=8)
        page.mouse.up()

    drag_to(-0.1)  # past the left end: 0
    expect(tags).to_have_value(re.compile(r"^#\S+( #\S+)+$"), timeout=30_000)
    expect(page.get_by_text("(below threshold)")).to_have_count(0)
    drag_to(1.1)  # past the right end: 1
    expect(tags).to_have_value("", timeout=30_000)
    expect(page.get_by_text("(below threshold)").first).to_be_visible()
    page.close()
