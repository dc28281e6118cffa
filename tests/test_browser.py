"""A real browser: Debian's chromium, driven by Playwright, against the running app."""

import json
import os
import re
import shutil

from conftest import running_app
from tasks import TASKS

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Without these, Chromium keeps trying to reach Google's services, which this network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def run_first_example(page, tab: str, button: str):
    """Open a tab, load its first example into the image input and press its button."""
    page.get_by_role("tab", name=tab).click()
    page.locator(".gallery-item, button.gallery-item, [data-testid='examples'] button").locator("visible=true").first.click()
    page.get_by_role("button", name=button).click()


def test_every_tab_opens_and_the_examples_run(demo_bundle, age_gender_trained, caries_bundle, models_with, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert os.path.exists(CHROMIUM), "install Debian's chromium (see README)"
    demo = demo_bundle
    root = models_with(demo__dog_breed=demo, age_gender=age_gender_trained[0], caries=caries_bundle)

    with running_app(root) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(url)

        for task in TASKS:
            page.get_by_role("tab", name=task.TITLE).click()
            expect(page.get_by_text(task.DESCRIPTION)).to_be_visible()

        run_first_example(page, "Dog breed", "Identify the breed")
        expect(page.get_by_text("Demo model trained on synthetic data")).to_be_visible()
        label = page.get_by_test_id("label").locator("visible=true")
        breeds = json.loads((demo / "task.json").read_text())["labels"]
        expect(label.locator("h2, .output-class").first).to_have_text(re.compile("|".join(breeds)), timeout=30_000)

        # Age & gender: the annotated photo, the straightened crop, gender and "NN ± M years".
        run_first_example(page, "Age & gender", "Estimate gender and age")
        expect(page.get_by_text(re.compile(r"\d+ ± \d+ years")).first).to_be_visible(timeout=30_000)
        label = page.get_by_test_id("label").locator("visible=true")
        expect(label.locator("h2, .output-class").first).to_have_text(re.compile("Female|Male"))
        expect(page.get_by_role("img", name=re.compile("straightened by")).first).to_be_visible()

        # Caries: the overlay with its legend, and the area table.
        run_first_example(page, "Caries segmentation", "Find the lesions")
        expect(page.get_by_role("textbox", name="Summary")).to_have_value(re.compile("% of the image"), timeout=30_000)
        expect(page.get_by_role("img", name=re.compile("segmentation mask")).first).to_be_visible()
        labels = json.loads((caries_bundle / "task.json").read_text())["labels"]
        expect(page.get_by_role("button", name=labels[0], exact=True)).to_be_visible()
        expect(page.get_by_role("grid", name="Area per class")).to_contain_text(labels[0])
        assert page.locator(".toast-body.error, [data-testid='toast-body']").count() == 0
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        if os.environ.get("SCREENSHOT"):
            shutil.copy(tmp_path / "app.png", os.environ["SCREENSHOT"])
        browser.close()
    assert errors == []
