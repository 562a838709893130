"""How the TUI writes durations, tokens and cost (short, fixed-width friendly)."""

from __future__ import annotations


def duration(ms: float | None) -> str:
    """`850ms`, `2.50s`, `3m05s`; `-` when unknown."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def seconds(value: float | None) -> str:
    """Elapsed seconds with one decimal (`1.2s`), for live rows."""
    return "-" if value is None else f"{max(0.0, value):.1f}s"


def cost(value: float | None, unpriced: int = 0) -> str:
    """The one way the TUI writes a cost (run status line, dashboard, tables, Traces, Evals):
    the known total (`$0.0076`, `$0.000062`, `$0.00`), plus `n unpriced` when `unpriced` calls
    (or runs) had no price: `$0.0076 + 3 unpriced`, or `3 unpriced` when none was priced.
    `?` when the cost is unknown and the count is too (never a made-up `$0.000000`)."""
    parts = []
    if value is not None and not (value == 0 and unpriced):
        parts.append(dollars(value))
    if unpriced:
        parts.append(f"{unpriced:,} unpriced")
    return " + ".join(parts) if parts else "?"


def dollars(value: float) -> str:
    """`$0.0076`, `$0.000062`, `$1.50`, `$0.00`: up to 6 decimals, trailing zeros cut to 2."""
    text = f"{value:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


# One colour per status, for every list that shows one (runs, steps, evals, timelines): a theme
# variable name. A status outside this map (a newer or foreign one) is neutral, never `error`.
STATUS_STYLE = {
    "running": "accent",
    "ok": "success",
    "done": "success",
    "finished": "success",
    "partial": "warning",
    "cancelled": "warning",
    "interrupted": "warning",
    "timeout": "error",
    "error": "error",
    "failed": "error",
    "skipped": "",
}


def status_style(status: str | None, theme: dict[str, str]) -> str:
    """The style of `status` in `theme` (`""`, the plain text colour, for an unknown status)."""
    name = STATUS_STYLE.get(status or "", "")
    return theme.get(name, "") if name else ""


def tokens(prompt: int | None, completion: int | None) -> str:
    """`167+61`."""
    return f"{prompt or 0}+{completion or 0}"


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def one_line(text: str | None, width: int) -> str:
    """The end of `text` on one line, at most `width` characters (for live streaming columns)."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else "…" + flat[-(width - 1) :]


def first_line(text: str | None, width: int) -> str:
    """The start of `text` on one line, at most `width` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def short_path(path: object) -> str:
    """A path relative to the working directory when it is inside it; a shipped mode as
    `(shipped) name.yaml` (shorter, and the same on every machine)."""
    from pathlib import Path

    from composite_cli.engine.library import builtin_modes_dir

    resolved = Path(str(path)).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        pass
    try:
        return f"(shipped) {resolved.relative_to(builtin_modes_dir().resolve())}"
    except ValueError:
        return str(path)


def without_paths(text: str, *paths: object) -> str:
    """`text` with each of `paths` written the short way."""
    for path in paths:
        text = text.replace(str(path), short_path(path))
    return text
