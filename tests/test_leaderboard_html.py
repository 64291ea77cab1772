"""The built leaderboard page in headless Chromium: it loads cleanly and shows its
tables and plots.

Needs the Debian package `chromium` (found at /usr/bin/chromium or on PATH); skipped
without it.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_leaderboard import EVIL, write_synthetic_results

from vsml_bench.leaderboard import build_leaderboard


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install -y chromium)",
)

# Matplotlib's first line colour (curves) and viridis at 0.5 (heat-map cells): both
# appear on the page only if the SVG plots were loaded and drawn.
CURVE_BLUE = (0x1F, 0x77, 0xB4)
VIRIDIS_TEAL = (0x21, 0x91, 0x8C)
# Tall enough for the first track, the grid table and its heat maps.
WINDOW = "--window-size=1400,2600"


def run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a local page, offline, with console messages on stderr."""
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    """Messages the page wrote to its console (errors included)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    write_synthetic_results(folder)
    build_leaderboard(folder)
    return folder


def test_the_harness_sees_console_errors(tmp_path):
    # The leaderboard page has no script; this page has one that fails, to show that
    # the check below would catch an error if the page had one.
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>undefinedFunction()</script>")
    result = run_chromium(page, tmp_path / "profile", "--dump-dom")
    assert any("undefinedFunction" in m for m in console_messages(result.stderr))


def test_page_loads_without_console_errors_and_shows_the_tables(site, tmp_path):
    result = run_chromium(site / "index.html", tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []
    dom = result.stdout

    tables = re.findall(r'<table class="ranking" data-track="([^"]+)">', dom)
    assert tables == ["randproj-cpu", "grid-cpu"]
    assert len(re.findall(r"<tbody>.*?</tbody>", dom, re.S)) == 2
    assert dom.count("<tr><td") == 4 + 3
    assert "<script" not in dom.lower()
    assert html.escape(EVIL) in dom

    sources = re.findall(r'<img src="([^"]+)"', dom)
    assert len(sources) == 8 + 2
    for source in sources:
        assert (site / source).is_file(), source


def _colour_count(path: Path, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB"), np.int32)
    close = np.abs(pixels - np.array(colour)).max(axis=-1) <= tolerance
    return int(close.sum())


def test_screenshot_shows_the_tables_and_plots(site, tmp_path):
    shot = tmp_path / "page.png"
    result = run_chromium(
        site / "index.html",
        tmp_path / "profile",
        "--hide-scrollbars",
        WINDOW,
        f"--screenshot={shot}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 20  # not a blank page
    assert _colour_count(shot, CURVE_BLUE) > 1000
    assert _colour_count(shot, VIRIDIS_TEAL) > 2000

    # The same page with its plots gone: the plot colours vanish, so the counts above
    # come from the loaded images.
    broken = tmp_path / "broken"
    shutil.copytree(site, broken)
    shutil.rmtree(broken / "plots")
    shot = tmp_path / "broken.png"
    run_chromium(
        broken / "index.html",
        tmp_path / "profile2",
        "--hide-scrollbars",
        WINDOW,
        f"--screenshot={shot}",
    )
    assert _colour_count(shot, CURVE_BLUE) < 50
    assert _colour_count(shot, VIRIDIS_TEAL) == 0
