"""benchmarks/peers.py's own parts, offline and without servers: the scripted upstream (n choices,
5 streamed chunks, the call record), what the record is read as (sequential rounds, time the
upstream was busy), the process-tree CPU reader and the table. The figures come from running the
script; nothing here measures time."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def peers() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("peers_bench", BENCH / "peers.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_upstream_answers_n_choices_and_records_the_call(peers: ModuleType) -> None:
    from starlette.testclient import TestClient

    with TestClient(peers.upstream_app(0.0)) as client:
        r = client.post("/v1/chat/completions", json={"model": "fake", "messages": [], "n": 3})
        assert r.status_code == 200
        body = r.json()
        assert [c["message"]["content"] for c in body["choices"]] == [peers.ANSWER] * 3
        assert body["usage"]["completion_tokens"] == 24
        calls = client.get("/calls").json()
        assert len(calls) == 1 and calls[0][0] <= calls[0][1]
        assert client.get("/calls").json() == []  # read once, then forgotten


def test_upstream_streams_the_answer_in_five_chunks(peers: ModuleType) -> None:
    from starlette.testclient import TestClient

    with TestClient(peers.upstream_app(0.0)) as client:
        payload = {"model": "fake", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
        r = client.post("/v1/chat/completions", json=payload)
        lines = [ln[6:] for ln in r.text.split("\n\n") if ln.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        events = [json.loads(ln) for ln in lines[:-1]]
        pieces = [
            e["choices"][0]["delta"]["content"]
            for e in events
            if e["choices"] and e["choices"][0]["delta"].get("content")
        ]
        assert len(pieces) == peers.STREAM_CHUNKS and "".join(pieces) == peers.ANSWER
        assert events[-1]["usage"]["total_tokens"] == 20 and events[-1]["choices"] == []
        assert client.get("/calls").json()[0][1] is not None


def test_split_answer_keeps_every_character(peers: ModuleType) -> None:
    assert peers.split_answer("abcdefg", 3) == ["abc", "de", "fg"]
    assert peers.split_answer("ab", 5) == ["a", "b"]


def test_rounds_parallel_calls_count_once_sequential_ones_each(peers: ModuleType) -> None:
    # three proposers at once, then an aggregator: 2 rounds (composite's moa-v1)
    assert peers.rounds_of([[0.0, 0.3], [0.01, 0.31], [0.02, 0.32], [0.33, 0.63]]) == 2
    # three calls one after the other: 3 rounds (optillm's moa)
    assert peers.rounds_of([[0.0, 0.3], [0.31, 0.61], [0.62, 0.92]]) == 3
    # a call still running extends its round
    assert peers.rounds_of([[0.0, None], [0.5, 0.6]]) == 1
    assert peers.rounds_of([]) == 0


def test_busy_time_is_the_union_of_the_calls(peers: ModuleType) -> None:
    calls = [[0.0, 0.3], [0.1, 0.35], [0.5, 0.8]]
    assert peers.busy_time(calls, until=1.0) == pytest.approx(0.65)
    assert peers.busy_time([[0.2, None]], until=0.5) == pytest.approx(0.3)


def test_tree_cpu_counts_this_process(peers: ModuleType) -> None:
    parent, ticks = peers._stat(os.getpid())
    assert parent == os.getppid() and ticks >= 0
    assert peers.tree_cpu(os.getpid()) >= ticks / os.sysconf("SC_CLK_TCK")
    assert peers.tree_cpu(2**22 + 12345) == 0  # no such process


def test_table_rows_cells_and_missing_servers(peers: ModuleType) -> None:
    med = {
        "optillm": {
            "moa_wall_ms": 938.4, "moa_calls": 3, "moa_rounds": 3, "moa_beyond_upstream_ms": 30.2,
            "moa_stream_first_content_ms": 940, "moa_stream_content_chunks": 1,
            "direct_cpu_ms": 30.04, "moa_cpu_ms": 36.0, "moa_throughput_rps": 15.0, "moa_throughput_cores": 0.5,
        },
        "plain LiteLLM proxy": {"direct_cpu_ms": 10.0, "direct_throughput_rps": 50.0, "direct_throughput_cores": 0.5},
    }  # fmt: skip
    lines = peers.table(med, ["optillm", "composite", "plain LiteLLM proxy"], 0.3)
    assert lines[0] == "| same upstream, 300 ms per call | optillm | composite | plain LiteLLM proxy |"
    assert lines[1] == "|---|---|---|---|"
    rows = {ln.split(" | ")[0][2:]: ln.strip("| ").split(" | ")[1:] for ln in lines[2:]}
    assert rows["one MoA request, wall"] == [
        "938 ms (3 calls in 3 rounds; 30 ms beyond the upstream's)",
        "not installed",
        "n/a",
    ]
    assert rows["streaming MoA, time to first content"][0] == "940 ms (1 content chunk)"
    assert rows["server CPU per request, direct / MoA"] == ["30.0 / 36.0 ms", "not installed", "10.0 / n/a"]
    assert rows["throughput, direct at concurrency 16"] == [
        "n/a",
        "not installed",
        "50.0 req/s (0.50 cores busy)",
    ]
    assert rows["throughput, MoA at concurrency 16"][0] == "15.0 req/s (0.50 cores busy)"
    assert len(rows) == len(peers.ROWS)


def test_medians_per_figure(peers: ModuleType) -> None:
    figures: dict[str, dict[str, list[float]]] = {}
    for values in ([1.0, None, 3.0], [None], [5.0]):
        peers._note(figures, "s", "k", values, 1000)
    assert figures == {"s": {"k": [2000.0, 5000.0]}}
    assert peers.medians(figures) == {"s": {"k": 3500.0}}
