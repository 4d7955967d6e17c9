"""The web chat page in a real browser: headless Debian Chromium driven by Playwright (its own browser
download is never used). It loads the page with the API key as HTTP Basic credentials, loads a dataset
user, sends a message, watches the answer stream in, and sees item cards and the tool steps. A
screenshot is saved to $RECAGENT_TEST_ARTIFACTS (default: test-artifacts/ in the repository)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.serve_harness import echo_agent, serving

KEY = "page-key-0123456789abcdef"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = os.environ.get("RECAGENT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    why = "Debian's chromium is not installed (apt-get install chromium); set RECAGENT_CHROMIUM to another binary"
    if os.environ.get("RECAGENT_REQUIRE_BROWSER"):
        pytest.fail(why)
    pytest.skip(why)


def _artifacts() -> Path:
    out = Path(os.environ.get("RECAGENT_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_chat_page_streams_answers_with_item_cards(ml100k_env, tmp_path, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")
    chromium = _chromium()
    monkeypatch.setenv("RECAGENT_API_KEYS", KEY)
    agent = echo_agent(ml100k_env, tmp_path / "s.sqlite", word_s=0.06)
    catalog = ml100k_env.catalog
    with serving(agent) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(
            http_credentials={"username": "me", "password": KEY}, viewport={"width": 1200, "height": 800}
        )
        page = context.new_page()
        outside, console_errors = [], []
        # the page may fetch nothing but its own server (no CDN): anything else is recorded and refused
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if urlparse(route.request.url).hostname == "127.0.0.1"
                else (outside.append(route.request.url), route.abort())
            ),
        )
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('health').textContent.includes('ml-100k')")
        page.fill("#user-input", "42")
        page.click("#user-load")
        page.wait_for_selector("#history .card")
        assert "user 42" in page.inner_text("#user-info")
        # record the answer's length at every change, to see it arrive in pieces
        page.evaluate("""() => { window.lengths = [];
            new MutationObserver(() => { const a = document.querySelectorAll('.msg.assistant .answer-text');
                if (a.length) window.lengths.push(a[a.length - 1].textContent.length); })
              .observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true}); }""")
        page.fill("#input", "a funny film for tonight")
        page.press("#input", "Enter")
        page.wait_for_selector(".msg.assistant[data-state=done]", timeout=60_000)
        answer = page.inner_text(".msg.assistant .answer-text")
        lengths = page.evaluate("window.lengths")
        assert answer.startswith("You said: a funny film for tonight.")
        assert len(set(lengths)) > 5 and 0 < min(x for x in lengths if x) < len(answer)  # streamed, not one block
        cards = page.query_selector_all(".msg.assistant .card")
        assert len(cards) == 3
        for c in cards:
            i = catalog.index_of[c.get_attribute("data-item-id")]
            assert c.inner_text().splitlines()[0] == catalog.titles[i] and f"[{catalog.ids[i]}]" in answer
        assert page.inner_text(".msg.assistant details.steps summary") == "tool steps (2)"
        page.click(".msg.assistant details.steps summary")
        assert "retrieve_for_user" in page.inner_text(".msg.assistant details.steps ol")
        page.screenshot(path=str(_artifacts() / "serve_chat_page.png"), full_page=True)
        # a reload lists the session; opening it shows the same turn, from the server's history
        page.reload()
        page.click(".session-item")
        page.wait_for_selector(".msg.assistant[data-state=done]")
        assert page.inner_text(".msg.assistant .answer-text") == answer
        assert len(page.query_selector_all(".msg.assistant .card")) == 3
        page.wait_for_function("document.getElementById('user-input').value === '42'")  # the session's user came back
        page.click("#clear")
        page.wait_for_function("document.querySelectorAll('.session-item').length === 0")
        assert page.query_selector_all(".msg") == []
        browser.close()
    assert outside == [] and console_errors == []
    agent.close()
