"""The benchmark scripts the README cites start as printed: each answers `--help`, and a mode that
needs a tool not installed says so before it starts anything. Their figures come from running them;
nothing here measures time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if "__main__" in p.read_text(encoding="utf-8"))


def test_the_readme_cites_scripts_that_exist():
    readme = (BENCH.parent / "README.md").read_text(encoding="utf-8")
    cited = {re.match(r"[\w.]+", part).group(0) for part in readme.split("python benchmarks/")[1:]}  # type: ignore[union-attr]
    assert len(cited) >= 10 and cited <= {p.name for p in SCRIPTS}, cited - {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_each_benchmark_answers_help(script: Path):
    result = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120, cwd=BENCH.parent
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.skipif((Path(sys.executable).parent / "py-spy").exists(), reason="py-spy is installed")
def test_serve_profile_without_py_spy_says_so_before_starting_servers():
    result = subprocess.run(
        [sys.executable, str(BENCH / "serve_throughput.py"), "--profile", "--requests", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BENCH.parent,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "--profile needs py-spy in this environment: pip install py-spy==0.4.3"
    assert result.stdout == ""  # no upstream, no server, no round was started
