"""The page at / in a real headless Chromium (Debian's, driven by Playwright) against a live `cepo serve`
on the real SmolLM2 model, behind an API key: a question's branches grow side by side and its answer is
shown; a second run, on a phone-width dark page, is stopped midway and the server frees its branches.

Every wait is for a condition on the page or the server, never for time. Budgets are tiny so that a
run takes seconds. `CEPO_WEB_SCREENSHOT=docs/web.png` saves the finished run (the README's picture)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import wait_until

pytestmark = pytest.mark.model
sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extras install playwright")
CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip(
        "Debian's chromium is not installed (`make test` installs it where apt-get is)",
        allow_module_level=True,
    )

KEY = "page-key"
QUESTION = "How many r's are in the word strawberry?"
SMALL = """\
bestofn_n: 2
max_candidates: 2
planning_n: 2
planning_m: 2
plan: {max_tokens: 32}
execute: {max_tokens: 24}
refine: {max_tokens: 24}
final: {max_tokens: 12}
sample: {max_tokens: 24}
rating: {max_tokens: 8}
"""
WAIT_MS = 300_000  # how long a wait on the model may take before the test fails (a bound, not a sync)
# Cards whose branch has text and has not ended.
GROWING = """[...document.querySelectorAll('.branch[data-state="running"] pre')]
    .filter((text) => text.textContent.trim()).length"""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cepo serve` itself, in its own process, on the default model with tiny budgets."""
    folder = tmp_path_factory.mktemp("serve")
    config, log = folder / "small.yaml", folder / "serve.log"
    config.write_text(SMALL)
    cepo = [sys.executable, "-c", "from cepo.cli import main; main()"]
    options = ["--port", "0", "--api-key", KEY, "--config", str(config), "--log-level", "warning"]
    with log.open("w") as stderr:
        server = subprocess.Popen([*cepo, "serve", *options], stderr=stderr, text=True)
    try:
        # The banner comes once the model is loaded and the socket listens.
        wait_until(lambda: "cepo serves" in log.read_text() or server.poll() is not None, 300, "serve up")
        port = re.search(r"at http://127\.0\.0\.1:(\d+)/v1", log.read_text())
        assert port, log.read_text()
        yield f"http://127.0.0.1:{port[1]}"
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


def metrics(url: str) -> dict[str, float]:
    samples = (line.rsplit(" ", 1) for line in httpx.get(f"{url}/metrics").text.splitlines())
    return {name: float(value) for name, value in samples if not name.startswith("#")}


def opened(browser: sync_api.Browser, url: str, **context: object) -> sync_api.Page:
    """The page, once it has asked for the key and been given it."""
    page = browser.new_context(**context).new_page()  # type: ignore[arg-type]
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.locator("#key").fill(KEY)
    page.locator("#key-form button").click()
    sync_api.expect(page.locator("#run")).to_be_enabled()
    page.locator("#question").fill(QUESTION)
    return page


def test_a_question_grows_several_branches_at_once_then_shows_the_answer(
    browser: sync_api.Browser, url: str
) -> None:
    page = opened(browser, url, viewport={"width": 1100, "height": 800})
    page.locator("#run").click()
    page.wait_for_function(f"{GROWING} >= 2")  # two branches mid-way at the same moment

    status = page.locator("#status")
    sync_api.expect(status).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    assert page.locator("#answer").inner_text().strip()
    sync_api.expect(page.locator(".candidate.chosen .badge")).to_have_text("chosen")
    assert page.locator(".candidate").count() == 2
    titles = page.locator(".branch .title").all_inner_texts()
    assert {"Plan 1", "Plan 2", "Final answer"} <= set(titles)  # the method's own stage titles
    assert page.locator(".checks").first.inner_text()  # the checks: answer, votes
    rows = page.locator("#totals tbody tr").all_inner_texts()
    assert rows[0].startswith("Plan") and rows[-1].startswith("total")
    if screenshot := os.environ.get("CEPO_WEB_SCREENSHOT"):
        page.screenshot(path=Path(screenshot), full_page=True)


def test_stop_cancels_a_run_midway_on_a_dark_phone_screen(browser: sync_api.Browser, url: str) -> None:
    page = opened(browser, url, viewport={"width": 390, "height": 800}, color_scheme="dark", is_mobile=True)
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert sum(map(int, re.findall(r"\d+", background)[:3])) < 3 * 64  # the dark scheme
    stopped_before = metrics(url).get('cepo_requests_total{method="cepo",status="499"}', 0)
    page.locator("#run").click()
    page.wait_for_function(f"{GROWING} >= 1")
    assert metrics(url)["cepo_engine_live_branches"] > 0
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll

    page.locator("#stop").click()
    sync_api.expect(page.locator("#status")).to_have_attribute("data-state", "stopped")
    assert page.evaluate(GROWING) == 0 and page.locator("#answer-box").is_hidden()

    def freed() -> bool:
        now = metrics(url)
        return (
            now["cepo_engine_live_branches"] == now["cepo_engine_kv_cells_live"] == 0
            and now["cepo_requests_running"] == 0
            and now.get('cepo_requests_total{method="cepo",status="499"}', 0) == stopped_before + 1
        )

    wait_until(freed, what="the server cancelled the run and freed its branches and KV cells")
