"""A run's page rendered by a real browser: headless Chromium (Debian's `chromium` package,
installed here with apt-get when missing) loads the page served by `composite traces browse`,
takes a screenshot and dumps the DOM after the page's scripts ran.

The screenshots are kept in tests/artifacts/ (a directory git ignores): run-timeline.png, and
run-page.png and step-page.png at 1,400 px wide (what each step said, a step's output first).
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
WINDOW = (1400, 900)
TALL = (1400, 2200)  # a whole run or step page
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


def run_chromium(
    chromium: str, profile: Path, *args: str, window: tuple[int, int] = WINDOW
) -> subprocess.CompletedProcess[str]:
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
        f"--window-size={window[0]},{window[1]}",
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


def boxes(html: str, attribute: str) -> dict[str, list[float]]:
    """Drawn boxes (left, top, right, bottom in px) recorded by the page's script, by element id."""
    found = {}
    for tag in re.findall(r"<(?:section|details)\b[^>]*>", html):
        name = re.search(attribute + r'="([^"]+)"', tag)
        box = re.search(r'data-box-px="([-\d. ]+)"', tag)
        if name and box:
            found[name.group(1)] = [float(v) for v in box.group(1).split()]
    return found


def test_run_and_step_pages_read_at_1400px_in_headless_chromium(
    chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """What each step said is on the run's page, and a step's output and request come first on
    its page, within a 1,400 px window (not at x = 3,000 px beside a wide table row)."""
    from conftest import FakeModel

    fake = FakeModel()
    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", fake)
    db = tmp_path / "traces.db"
    ids = asyncio.run(populate(db, fake))
    calls = rows(db, "select id, name, output from steps where run_id = ? and kind = 'llm'", ids["moa"])
    expert = next(c for c in calls if c["name"] == "analyst")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n", encoding="utf-8")
    shots = {"run": ARTIFACTS / "run-page.png", "step": ARTIFACTS / "step-page.png"}
    pages = {"run": f"/traces/runs/{ids['moa']}", "step": f"/traces/steps/{expert['id']}"}
    dom = {}
    with browse_server(db, tmp_path / "browse.log") as url:
        for name, page in pages.items():
            shots[name].unlink(missing_ok=True)
            run_chromium(
                chromium, tmp_path / f"p-{name}", f"--screenshot={shots[name]}", url + page, window=TALL
            )
            done = run_chromium(chromium, tmp_path / f"d-{name}", "--dump-dom", url + page, window=TALL)
            assert done.returncode == 0, done.stderr[-2000:]
            dom[name] = done.stdout
    for name, shot in shots.items():
        assert shot.is_file() and png_size(shot) == TALL, name
        print(f"\nscreenshot of the {name} page: {shot}")

    # The run's page: every model call's answer in its own open <details>, inside the window.
    run = dom["run"]
    legend = re.search(r'<p class="ct-legend">(.*?)</p>', run, re.S)
    assert legend and "</i>call</span>" in legend.group(1)
    said = boxes(run, "data-step-id")
    assert set(said) == {c["id"] for c in calls}
    for call in calls:
        element = re.search(
            r'<details class="cs-step[^"]*" data-step-id="' + call["id"] + r'"[^>]*>.*?</details>', run, re.S
        )
        assert element and " open" in element.group(0).split(">")[0] and call["output"] in element.group(0)
        left, _, right, _ = said[call["id"]]
        assert 0 <= left < 100 and right <= TALL[0], (call["name"], said[call["id"]])

    # The step's page: output, then messages, request, response, all within the window, before the table.
    step = dom["step"]
    parts = boxes(step, "id")
    order = [
        "composite-step-output",
        "composite-step-messages",
        "composite-step-request",
        "composite-step-response",
    ]
    assert all(part in parts for part in order), parts
    tops = [parts[part][1] for part in order]
    assert tops == sorted(tops)
    for part in order:
        left, _, right, _ = parts[part]
        assert 0 <= left < 100 and right <= TALL[0], (part, parts[part])
    assert parts["composite-step-output"][1] < 600  # near the top of the page, not below the table
    assert expert["output"] in step.split('id="composite-step-output"')[1].split("</details>")[0]
    assert step.index('id="composite-step-response"') < step.index('<table class="rows-and-columns">')
