"""The SQL of the Datasette plugin's pages (a run's timeline and outputs, a step's page).

Datasette runs these itself, through its own async database API (`await db.execute(sql, params)`),
so they are text here rather than TraceReader methods; traces/ still owns every statement.
`DRIVER_ERRORS` is what a failed Datasette read raises, so the plugin need not import the driver.
"""

from __future__ import annotations

import sqlite3

DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)

# A step's own page: what it said, what it was asked, the response. Params: [step id].
STEP_PAGE = (
    "select kind, name, model, status, latency_ms, prompt_tokens, completion_tokens, "
    "cost_usd, retries, output, error, request_json, response_json, scratchpad "
    "from steps where id = ?"
)
# The run a step belongs to. Params: [step id].
STEP_RUN_ID = "select run_id from steps where id = ?"
# A run's row for its timeline, output cut. Params: [max output chars, run id].
TIMELINE_RUN = "select id, latency_ms, status, substr(output, 1, ?) as output, error from runs where id = ?"
# A run's steps for its timeline, in start order (no long text). Params: [run id].
TIMELINE_STEPS = (
    "select id, run_id, parent_id, seq, depth, kind, name, model, status, offset_ms, latency_ms, "
    "prompt_tokens, completion_tokens, cost_usd, error from steps where run_id = ? order by offset_ms, seq"
)
# What a run's steps said, each output cut. Params: [max chars per step, run id].
STEP_OUTPUTS = (
    "select id, substr(output, 1, ?) as output, length(output) as output_chars, error from steps "
    "where run_id = ? and (length(output) > 0 or error is not null)"
)
