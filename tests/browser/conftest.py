"""Browser tests: Playwright for Python driving Debian's chromium against a live server.

`playwright install` cannot download browsers here, so the tests use the system's
chromium (`make test` installs it with apt-get when it is missing). When no chromium can
be found at all, every browser test is skipped with a reason that says so, and the end of
the run repeats it in capitals: it is never a silent pass.

The browser tests run on SQLite only: the pages' storage is covered on both stores by
tests/test_web_*.py; here the subject is the browser.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import T0, _clean

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
_skipped: list[str] = []


def find_chromium() -> str | None:
    wanted = os.environ.get("RAPPORT_CHROMIUM")
    for path in (wanted, *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _no_browser_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "BROWSER TESTS SKIPPED: the playwright package is not installed (pip install -e '.[dev]')"
    if find_chromium() is None:
        return (
            "BROWSER TESTS SKIPPED: no chromium at /usr/bin/chromium (or $RAPPORT_CHROMIUM); "
            "install it with `apt-get install chromium` (make test does when it can)"
        )
    return None


@pytest.fixture
def engine(_engines: dict[str, sa.Engine]) -> sa.Engine:
    """SQLite only (see the module docstring)."""
    eng = _engines["sqlite"]
    _clean(eng)
    return eng


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One chromium per module, closed with it: while Playwright's sync API runs, its event
    loop is the thread's running loop, and the rest of the suite needs asyncio.run."""
    reason = _no_browser_reason()
    if reason is not None:
        _skipped.append(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=find_chromium(), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def shop(engine: sa.Engine) -> sa.Engine:
    """A small demo shop in the store, ending at the tests' clock."""
    from rapport.demo.generator import DemoConfig, generate

    generate(engine, DemoConfig(customers=120, months=1, seed=5, end=T0))
    return engine


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped:
        terminalreporter.write_sep("!", _skipped[0], red=True, bold=True)
