"""How often does the embedded SmolLM2 model call a weather tool correctly?

    python benchmarks/local_tools.py [--json]

20 prompts, each asking about the weather in one city, through `litellm.completion(model=
"local/smollm2", tools=[get_weather])`. A call is correct when the model calls get_weather with
valid JSON arguments whose `city` names the asked city. Measured with tool_choice "auto" (the model
decides whether to call) and with the function forced (only the arguments are up to the model).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from composite_cli.litellm_loader import get_litellm

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name, e.g. Paris"}},
            "required": ["city"],
        },
    },
}
PROMPTS = [
    ("What's the weather like in Paris today?", "Paris"),
    ("Is it raining in London right now?", "London"),
    ("How hot is it in Madrid?", "Madrid"),
    ("Tell me the current weather in Tokyo.", "Tokyo"),
    ("Do I need an umbrella in Berlin today?", "Berlin"),
    ("What is the temperature in Rome?", "Rome"),
    ("Weather in New York, please.", "New York"),
    ("Is it sunny in Sydney?", "Sydney"),
    ("How cold is it in Moscow at the moment?", "Moscow"),
    ("Check the weather for Cairo.", "Cairo"),
    ("What's it like outside in Toronto?", "Toronto"),
    ("Is it snowing in Oslo?", "Oslo"),
    ("Give me the weather forecast for Lisbon.", "Lisbon"),
    ("Current conditions in Mumbai?", "Mumbai"),
    ("How windy is it in Chicago?", "Chicago"),
    ("What's the weather in Amsterdam?", "Amsterdam"),
    ("Should I wear a coat in Vienna today?", "Vienna"),
    ("Is it humid in Singapore right now?", "Singapore"),
    ("What's the temperature outside in Dublin?", "Dublin"),
    ("Look up the weather in Prague for me.", "Prague"),
]


def judge(response, city: str) -> tuple[bool, bool]:
    """(called get_weather with valid JSON, ... and the right city)."""
    calls = response.choices[0].message.tool_calls or []
    for call in calls:
        if call.function.name != "get_weather":
            continue
        try:
            args = json.loads(call.function.arguments or "")
        except json.JSONDecodeError:
            continue
        if isinstance(args, dict):
            return True, city.lower() in str(args.get("city", "")).lower()
    return False, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    litellm = get_litellm()
    figures = {}
    for label, choice in (
        ("auto", "auto"),
        ("forced", {"type": "function", "function": {"name": "get_weather"}}),
    ):
        called = correct = 0
        start = time.perf_counter()
        for prompt, city in PROMPTS:
            response = litellm.completion(
                model="local/smollm2",
                messages=[{"role": "user", "content": prompt}],
                tools=[WEATHER],
                tool_choice=choice,
                max_tokens=64,
                temperature=0.0,
                seed=1,
            )
            ok_call, ok_city = judge(response, city)
            called += ok_call
            correct += ok_city
        figures[label] = {
            "prompts": len(PROMPTS),
            "called_get_weather": called,
            "correct_city": correct,
            "seconds": round(time.perf_counter() - start, 1),
        }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for label, f in figures.items():
        print(
            f"tool_choice={label:6}  called get_weather {f['called_get_weather']}/{f['prompts']}  "
            f"right city {f['correct_city']}/{f['prompts']}  ({f['seconds']} s)"
        )


if __name__ == "__main__":
    main()
