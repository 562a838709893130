"""The SQL of the Datasette plugin's pages (a run's timeline and outputs, a step's page) and of the
canned queries the shipped metadata offers.

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


# Datasette's canned queries over a trace database, by name; composite_cli/datasette/metadata.yaml
# gives each its title and description. Params: Datasette's named `:params` (`:mode`, "" for all).
CANNED_QUERIES: dict[str, str] = {
    "slowest_runs": """\
select id, created_at, mode, status, source, latency_ms, calls, llm_calls, max_depth,
  tokens, cost_usd
from run_summary
where latency_ms is not null and (:mode = '' or mode = :mode)
order by latency_ms desc
limit 50
""",
    "failed_steps": """\
select s.id, s.run_id, r.mode, s.started_at, s.kind, s.name, s.model, s.retries,
  s.latency_ms, s.error
from steps s join runs r on r.id = s.run_id
where (s.status = 'error' or s.error is not null) and (:mode = '' or r.mode = :mode)
  and not exists (
    select 1 from steps c
    where c.parent_id = s.id and (c.status = 'error' or c.error is not null)
  )
order by s.started_at desc
limit 200
""",
    "cost_by_model": """\
select model, calls, runs, errors, tokens, cost_usd,
  round(100.0 * cost_usd / nullif((select sum(cost_usd) from model_stats), 0), 1) as pct_of_cost,
  mean_latency_ms
from model_stats
order by cost_usd desc nulls last, calls desc
""",
    "depth_distribution": """\
select mode, llm_calls as internal_calls, count(*) as runs,
  round(100.0 * count(*) / sum(count(*)) over (partition by mode), 1) as pct_of_mode,
  max(max_depth) as max_depth,
  round(avg(latency_ms), 1) as mean_latency_ms
from run_summary
group by mode, llm_calls
order by mode, llm_calls
""",
    "tool_using_requests": """\
select r.id, r.created_at, r.mode, r.status, r.finish_reason,
  sum(s.kind in ('tool', 'think')) as tool_steps,
  group_concat(distinct case when s.kind in ('tool', 'think') then s.kind || ':' || s.name end) as tools_run,
  sum(s.kind = 'llm' and instr(s.request_json, '"tools"') > 0
    and case when json_valid(s.request_json)
      then json_extract(s.request_json, '$.params.tools') is not null else 0 end) as calls_offered_tools
from runs r join steps s on s.run_id = r.id
group by r.id
having tool_steps > 0 or calls_offered_tools > 0
order by r.created_at desc
""",
    "eval_comparison": """\
select e.eval_run_id, er.created_at, er.file, e.mode,
  count(*) as n,
  sum(e.error is not null) as errors,
  round(avg(case when e.error is null then e.score end), 4) as mean_score,
  sum(case when e.error is null then e.passed end) as passed,
  round(avg(e.latency_ms), 1) as mean_latency_ms,
  round(avg(e.tokens), 1) as mean_tokens,
  avg(e.cost_usd) as mean_cost_usd,
  round(avg(e.calls), 2) as mean_calls
from eval_results e join eval_runs er on er.id = e.eval_run_id
group by e.eval_run_id, e.mode
order by er.created_at desc, mean_score desc
""",
}
