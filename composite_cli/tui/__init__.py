"""`composite tui`: a Textual app to watch modes run live, read trace timelines, compare evals,
watch the dashboard and browse modes.

Layout: `app.py` (the App, its screens as app modes, commands), `screens/` (one screen per file),
`widgets/` (timeline, step table, plots, ...), `styles/` (.tcss), `bridge.py` (engine events →
messages, token deltas merged), `run_state.py` (what a live run looks like), `services.py` (what the
app is built from: settings, runner, clock; tests build it from fakes), `demo.py` (a scripted run
for tests and the README screenshots).
"""
