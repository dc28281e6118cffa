"""A real browser: Debian's chromium, driven by Playwright, against the running app."""

import json
import os
import re
import shutil

import pytest

from conftest import running_app
from tasks import TASKS

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Without these, Chromium keeps trying to reach Google's services, which this network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_every_tab_opens_and_the_dog_breed_example_runs(demo_bundle, models_with, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert os.path.exists(CHROMIUM), "install Debian's chromium (see README)"
    demo = demo_bundle
    root = models_with(demo__dog_breed=demo)

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

        page.get_by_role("tab", name="Dog breed").click()
        expect(page.get_by_text("Demo model trained on synthetic data")).to_be_visible()
        page.locator(".gallery-item, button.gallery-item, [data-testid='examples'] button").first.click()
        page.get_by_role("button", name="Identify the breed").click()
        label = page.get_by_test_id("label")
        breeds = json.loads((demo / "task.json").read_text())["labels"]
        expect(label.locator("h2, .output-class").first).to_have_text(re.compile("|".join(breeds)), timeout=30_000)
        assert page.locator(".toast-body.error, [data-testid='toast-body']").count() == 0
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        if os.environ.get("SCREENSHOT"):
            shutil.copy(tmp_path / "app.png", os.environ["SCREENSHOT"])
        browser.close()
    assert errors == []
