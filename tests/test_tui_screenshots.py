"""`python -m composite_cli.tui.screenshots DIR` writes the README's TUI screenshots from scripted
data (no model, no network): each is an SVG of its screen."""

from __future__ import annotations

from pathlib import Path

from composite_cli.tui import screenshots


def test_the_readme_screenshots_are_written(tmp_path: Path, isolated_home: Path):
    screenshots.main([str(tmp_path)])
    expected = {
        "tui-run.svg": "Name&#160;three&#160;classical",
        "tui-trace.svg": "demo-trace-0001",
        "tui-traces.svg": "What&#160;is&#160;6&#160;*&#160;7?",
        "tui-evals.svg": "score&#160;vs&#160;p50&#160;latency",
        "tui-dashboard.svg": "requests&#160;over&#160;time",
    }
    for name, text in expected.items():
        svg = (tmp_path / name).read_text(encoding="utf-8")
        assert svg.startswith("<svg") and text in svg, name
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert all(f"docs/{name}" in readme for name in expected)
