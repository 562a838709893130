"""A run's page rendered by a real browser: headless Chromium (Debian's `chromium` package,
installed here with apt-get when missing) loads the page served by `composite traces browse`,
takes a screenshot and dumps the DOM after the page's scripts ran.

The screenshot is kept in tests/artifacts/run-timeline.png (a directory git ignores).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from test_datasette import browse_server, populate, rows

import composite_cli.calls

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SCREENSHOT = ARTIFACTS / "run-timeline.png"
WINDOW = (1280, 900)
INSTALL_TIMEOUT_S = 900


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT_S
    )


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium executable, installed from Debian's package if missing (needs root)."""
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium is not installed and cannot be: no apt-get, or not root")
    import fcntl

    # One install at a time: under `pytest -n 2` each worker runs this fixture.
    with open("/tmp/composite-tests-chromium.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which("chromium")
        if found:
            return found
        print("\ninstalling chromium with apt-get (this can take a minute)...")
        done = _apt("install", "-y", "chromium")
        if done.returncode != 0:  # the package lists may be missing or stale
            _apt("update")
            done = _apt("install", "-y", "chromium")
    found = shutil.which("chromium")
    if done.returncode != 0 or not found:
        reason = (done.stderr or done.stdout).strip().splitlines()[-3:]
        print("apt-get install chromium failed:", *reason, sep="\n  ")
        pytest.skip(f"chromium could not be installed: {' / '.join(reason)}")
    return found


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # we run as root
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_run_page_timeline_in_headless_chromium(
    chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from conftest import FakeModel

    fake = FakeModel()
    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", fake)
    db = tmp_path / "traces.db"
    ids = asyncio.run(populate(db, fake))
    steps = rows(db, "select id from steps where run_id = ?", ids["moa"])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n", encoding="utf-8")
    SCREENSHOT.unlink(missing_ok=True)

    with browse_server(db, tmp_path / "browse.log") as url:
        page = f"{url}/traces/runs/{ids['moa']}"
        shot = run_chromium(chromium, tmp_path / "profile1", f"--screenshot={SCREENSHOT}", page)
        dom = run_chromium(chromium, tmp_path / "profile2", "--dump-dom", page)

    assert SCREENSHOT.is_file(), shot.stderr[-2000:]
    print(f"\nscreenshot of the run timeline: {SCREENSHOT}")
    assert png_size(SCREENSHOT) == WINDOW
    assert SCREENSHOT.stat().st_size > 20_000  # a drawn page, not a blank one

    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    section = re.search(r'<section class="composite-timeline" id="composite-timeline"[^>]*>', html)
    assert section, html[:2000]
    assert 'data-rendered="true"' in section.group(0)  # the page's script ran
    track_px = float(re.search(r'data-track-px="([\d.]+)"', section.group(0)).group(1))
    assert track_px > WINDOW[0] / 3  # the track takes most of the page's width
    drawn = re.findall(
        r'data-step-id="([^"]+)"[^>]*style="[^"]*width: ([\d.]+)%"[^>]*data-width-px="([\d.]+)"', html
    )
    assert sorted(step_id for step_id, _, _ in drawn) == sorted(s["id"] for s in steps)
    for step_id, pct, px in drawn:
        # Every bar is visible and as wide as its share of the run (2px minimum for instant steps).
        assert float(px) > 0, step_id
        assert float(px) == pytest.approx(max(2.0, float(pct) / 100 * track_px), abs=1.5), step_id
