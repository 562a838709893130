"""vote-v1 and self-moa-v1 (issue 15) end to end on mock models: the engine (tally, tie rule,
extraction, tools, usage, streaming), `composite chat`, `composite eval`, the LiteLLM provider and
`composite serve`; and the control: on a scripted model right 60% of the time per sample,
vote-v1 beats direct on evals/word_problems.jsonl with a paired test that separates them."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import FakeModel, Reply
from typer.testing import CliRunner

import composite_cli
from composite_cli.cli.main import app
from composite_cli.config import Profile, Settings
from composite_cli.engine.executor import run_mode
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.steps.vote import extract_answer
from composite_cli.errors import BadParameter
from composite_cli.events import CallFinished, StepFinished, StepStarted, TokenDelta

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
ASK = [{"role": "user", "content": "What is 6 times 7?"}]
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
PRICED = Profile("priced", {"*": {"model": "openai/gpt-4o-mini"}})


async def run(mode: str, profile: Profile = PRICED, **kw: Any) -> tuple[Any, list[Any]]:
    events: list[Any] = []
    spec = ModeLibrary().load(mode)
    result = await run_mode(spec, RunRequest(**kw), profile=profile, subscribers=[events.append])
    return result, events


def scratchpad(events: list[Any], name: str) -> str:
    started = next(e for e in events if isinstance(e, StepStarted) and e.name == name)
    return (
        next(e for e in events if isinstance(e, StepFinished) and e.step_id == started.step_id).scratchpad
        or ""
    )


def samples(fake: FakeModel, *texts: str) -> None:
    for i, text in enumerate(texts, start=1):
        fake.on(f"sample{i}", text)


# -- answer extraction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "how", "answer"),
    [
        ("6 x 7 = 42, so the answer is 42.", "number", "42"),
        ("First 40, then 2 more.\nAnswer: 42", "number", "42"),
        ("It costs $1,250.", "number", "1250"),
        ("\\boxed{42.0}", "number", "42"),
        ("no number here", "number", None),
        ("(A) is tempting but the answer is (C).", "choice", "C"),
        ("Options A and B look close.\nB", "choice", "B"),
        ("Some reasoning.\nAnswer: The Eiffel Tower.", "phrase", "eiffel tower"),
        ("Some reasoning.\nParis", "phrase", "paris"),
        ("  Paris. ", "text", "paris"),
    ],
)
def test_extract_answer(text: str, how: str, answer: str | None):
    assert extract_answer(text, how) == answer


# -- vote-v1 on the engine --------------------------------------------------------------------


async def test_vote_counts_extracted_numbers_and_records_the_tally(fake_model):
    samples(fake_model, "6*7=41. Answer: 41", "Answer: 42", "So 42.", "answer is 43", "The answer is 42")
    result, events = await run("vote-v1", messages=ASK)
    assert result.text == "Answer: 42"  # the winning sample's own text (the first that said 42)
    assert result.calls == 5 and result.status == "ok"
    pad = scratchpad(events, "answer")
    assert "majority tally: {'42': 3, '41': 1, '43': 1}" in pad
    assert "answers (number): sample1='41', sample2='42', sample3='42', sample4='43', sample5='42'" in pad
    assert "winner: '42', 3 of 5; the reply is sample2's text" in pad
    assert result.notes["vote"] == {"answer": "42", "votes": 3, "of": 5}


async def test_a_tie_goes_to_the_earliest_samples_answer(fake_model):
    samples(fake_model, "Answer: 7", "Answer: 9", "Answer: 9", "Answer: 7", "no idea")
    result, events = await run("vote-v1", messages=ASK)
    assert result.text == "Answer: 7"
    assert "tie between ['7', '9']: the earliest sample's answer wins (sample1)" in scratchpad(
        events, "answer"
    )


async def test_extract_is_a_request_parameter(fake_model):
    samples(fake_model, "Answer: B", "(C)", "I pick B", "Answer: B", "A")
    result, _ = await run("vote-v1", messages=ASK, params={"extract": "choice"})
    assert result.text == "Answer: B"
    with pytest.raises(BadParameter, match="parameter 'extract' must be one of text, number, choice, phrase"):
        await run("vote-v1", messages=ASK, params={"extract": "vibes"})


async def test_vote_samples_never_get_the_clients_tools_and_the_reply_is_sent_whole(fake_model):
    samples(fake_model, "Answer: 42", "Answer: 42", "Answer: 41", "Answer: 42", "Answer: 40")
    _, events = await run("vote-v1", messages=ASK, tools=[WEATHER], stream=True)
    assert all("tools" not in r for r in fake_model.requests)
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert [(d.step_id, d.text) for d in deltas] == [(None, "Answer: 42")]
    assert all(r.get("temperature") == 0.8 for r in fake_model.requests)


async def test_usage_and_cost_are_summed_over_the_samples(fake_model):
    samples(fake_model, "Answer: 1", "Answer: 1", "Answer: 1", "Answer: 1", "Answer: 1")
    result, events = await run("vote-v1", messages=ASK)
    records = [e.record for e in events if isinstance(e, CallFinished)]
    assert len(records) == 5
    assert result.prompt_tokens == sum(r.prompt_tokens for r in records) > 0
    assert result.completion_tokens == sum(r.completion_tokens for r in records) > 0
    assert result.cost_usd == pytest.approx(sum(r.cost_usd for r in records)) and result.cost_usd > 0


async def test_vote_with_a_slow_sample_answers_after_quorum_and_grace(fake_model):
    samples(fake_model, "Answer: 42", "Answer: 42", "Answer: 42")
    fake_model.on("sample4", "Answer: 1", delay=60).on("sample5", "Answer: 1", delay=60)
    result, events = await run("vote-v1", messages=ASK, params={"quorum": 3, "grace": 0.01})
    assert result.text == "Answer: 42"
    status = {e.record.name: e.record.status for e in events if isinstance(e, CallFinished)}
    assert status["sample4"] == status["sample5"] == "cancelled"


# -- self-moa-v1 on the engine -----------------------------------------------------------------


async def test_self_moa_samples_one_model_then_streams_the_aggregate_with_the_tools(fake_model):
    samples(fake_model, "draft one", "draft two", "draft three", "draft four")
    fake_model.on("answer", "The aggregate answer.")
    result, events = await run("self-moa-v1", messages=ASK, tools=[WEATHER], stream=True)
    assert result.text == "The aggregate answer." and result.calls == 5
    names = [r["metadata"]["composite_call"] for r in fake_model.requests if r.get("tools")]
    assert names == ["answer"]  # the client's tools reach the aggregator only
    sampled = [r for r in fake_model.requests if r["metadata"]["composite_call"].startswith("sample")]
    assert len(sampled) == 4 and {r["model"] for r in fake_model.requests} == {"openai/gpt-4o-mini"}
    assert all(r.get("temperature") == 0.7 for r in sampled)
    answer_step = next(e for e in events if isinstance(e, StepStarted) and e.name == "answer").step_id
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert deltas and {d.step_id for d in deltas} == {answer_step}
    assert "".join(d.text for d in deltas) == "The aggregate answer."
    shown = fake_model.request("answer")["messages"][0]["content"]
    assert all(f"draft {w}" in shown for w in ("one", "two", "three", "four"))
    assert "candidates shown as: " in scratchpad(events, "answer")
    records = [e.record for e in events if isinstance(e, CallFinished)]
    assert result.cost_usd == pytest.approx(sum(r.cost_usd for r in records))


# -- front ends: chat, eval, the provider -------------------------------------------------------

FAKE_CONFIG = {"profile": "fake", "profiles": {"fake": {"*": {"model": "openai/gpt-4o-mini"}}}}


@pytest.fixture
def fake_config(isolated_home: Path) -> Path:
    path = isolated_home / "composite.yaml"
    path.write_text(yaml.safe_dump(FAKE_CONFIG), encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", ["vote", "self-moa"])
def test_chat(mode: str, fake_model, fake_config):
    fake_model.default = Reply("Answer: 42")
    result = CliRunner().invoke(app, ["chat", "-m", mode, "--json", "6 times 7?"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["choices"][0]["message"]["content"] == "Answer: 42"
    assert data["composite"]["calls"] == 5 and data["composite"]["cost_usd"] > 0


@pytest.mark.parametrize("mode", ["vote-v1", "self-moa-v1"])
def test_eval(mode: str, fake_model, fake_config, isolated_home: Path):
    fake_model.default = Reply("Answer: 42")
    (isolated_home / "e.jsonl").write_text(
        json.dumps({"id": "q", "input": "6 times 7?", "expected": 42, "scorer": "numeric"}) + "\n"
    )
    result = CliRunner().invoke(app, ["eval", "e.jsonl", "-m", f"direct,{mode}", "--json", "-q"])
    assert result.exit_code == 0, result.output
    modes = {m["mode"]: m for m in json.loads(result.stdout)["modes"]}
    assert modes[mode]["score"] == 1.0 and modes[mode]["calls_mean"] == 5


@pytest.mark.parametrize("mode", ["vote-v1", "self-moa-v1"])
def test_provider(mode: str, fake_model, tmp_path: Path):
    composite_cli.register(settings=Settings(profile=PRICED, db_path=tmp_path / "t.db"))
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    fake_model.default = Reply("Answer: 42")
    response = litellm.completion(model=f"composite/{mode}", messages=ASK)
    assert response.choices[0].message.content == "Answer: 42"
    info = response._hidden_params["composite"]
    assert info["calls"] == 5
    assert litellm.completion_cost(completion_response=response) > 0
    chunks = list(litellm.completion(model=f"composite/{mode}", messages=ASK, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Answer: 42"


def test_serve(tmp_path: Path):
    """One `composite serve` of both modes on LiteLLM mock responses: an answer, a stream, usage."""
    from test_serve_e2e import MASTER, serve_on_mock

    mock = {"model": "openai/gpt-4o-mini", "mock_response": "Answer: 42"}
    with serve_on_mock(tmp_path, ["vote", "self-moa"], mock, name="vote") as server:
        headers = {"Authorization": f"Bearer {MASTER}"}
        for model in ("vote", "self-moa-v1"):
            body = {"model": model, "messages": ASK}
            done = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=60)
            assert done.status_code == 200, done.text
            data = done.json()
            assert data["choices"][0]["message"]["content"] == "Answer: 42"
            assert data["usage"]["prompt_tokens"] > 0
            streamed = httpx.post(
                f"{server.url}/v1/chat/completions",
                json={**body, "stream": True},
                headers=headers,
                timeout=60,
            )
            text = "".join(
                (json.loads(line[6:])["choices"] or [{"delta": {}}])[0]["delta"].get("content") or ""
                for line in streamed.text.splitlines()
                if line.startswith("data: {")
            )
            assert text == "Answer: 42"


# -- the control: a scripted model right 60% of the time per sample -----------------------------

WORD_PROBLEMS = REPO / "evals" / "word_problems.jsonl"
ACCURACY = 0.6


def scripted_60(expected: dict[str, int]):
    """A model that answers each call right with probability 0.6, independently per call: the
    draw comes from a hash of the question and the call's name (`answer` for direct,
    `sample1`..`sample5` for vote-v1), so it does not depend on the order calls run in. A wrong
    answer is the right one plus or minus 1 to 20, so wrong samples rarely agree."""

    def reply(name: str, messages: list[dict[str, Any]]) -> str:
        question = next(m["content"] for m in messages if m["role"] == "user")
        digest = hashlib.sha256(f"{question}|{name}".encode()).digest()
        right = int.from_bytes(digest[:8], "big") / 2**64 < ACCURACY
        answer = expected[question]
        if not right:
            offset = 1 + digest[8] % 20
            answer += offset if digest[9] % 2 else -offset
        return f"Working it through step by step.\nAnswer: {answer}"

    return reply


def control_line() -> str:
    lines = [
        line[2:] for line in re.findall(r"^\$ composite eval evals/word_problems\.jsonl.*$", README, re.M)
    ]
    assert len(lines) == 1, "the README shows one control command"
    return lines[0]


def test_word_problems_file_is_what_its_generator_writes():
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "evals" / "make_word_problems.py"),
            "--check",
            "--out",
            str(WORD_PROBLEMS),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_vote_beats_direct_on_a_60_percent_model_with_a_separating_paired_test(
    fake_model, fake_config, isolated_home: Path
):
    """The README's control command, run as printed on the scripted model. A check that the vote
    machinery and the statistics work together, not a claim about any real model."""
    cases = [json.loads(line) for line in WORD_PROBLEMS.read_text().splitlines()]
    (isolated_home / "evals").mkdir()
    shutil.copy(WORD_PROBLEMS, isolated_home / "evals" / WORD_PROBLEMS.name)
    fake_model.script(scripted_60({c["input"]: c["expected"] for c in cases}))
    args = shlex.split(control_line())
    result = CliRunner().invoke(app, [*args[1:], "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    score = {m["mode"]: m["score"] for m in report["modes"]}
    assert score["vote-v1"] > score["direct"]
    (pair,) = report["pairs"]
    assert (pair["a"], pair["b"], pair["test"]) == ("direct", "vote-v1", "exact McNemar")
    assert pair["separable"] and pair["p"] < 0.05 and pair["wins_b"] > pair["wins_a"]


# -- hostile mode files ------------------------------------------------------------------------

VOTE = """name: v
params: {how: number, s: choice}
steps:
  - {id: d, kind: fanout, model: m, n: 3}
  - id: answer
    kind: vote
    from: d
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "extract: vibes",
            "v.yaml:8: steps[1].extract: must be text (the whole answer), number (a number), "
            "choice (a letter A-E) or phrase (a short phrase), got 'vibes'",
        ),
        ("extract: $nope", "steps[1].extract: unknown parameter 'nope' (declared: how, s)"),
        ("extract: 3", "steps[1].extract: must be a string"),
        ("shuffle: false", "steps[1].shuffle: a majority vote shows the candidates to no model"),
        ("anonymize: false", "steps[1].anonymize: a majority vote shows the candidates to no model"),
    ],
)
def test_bad_vote_fields_are_one_line_errors(extra: str, message: str):
    from composite_cli.engine.spec import parse_mode
    from composite_cli.errors import ModeValidationError

    with pytest.raises(ModeValidationError) as caught:
        parse_mode(VOTE + f"    {extra}\n", "v.yaml")
    assert message in str(caught.value)


def test_extract_may_name_a_string_parameter_with_a_valid_default():
    from composite_cli.engine.spec import ParamRef, parse_mode
    from composite_cli.errors import ModeValidationError

    spec = parse_mode(VOTE + "    extract: $how\n", "v.yaml")
    assert spec.steps[-1].extract == ParamRef("how")
    with pytest.raises(ModeValidationError, match="parameter 'bad' defaults to 'vibes', not text"):
        parse_mode(VOTE.replace("s: choice", "bad: vibes") + "    extract: $bad\n", "v.yaml")
