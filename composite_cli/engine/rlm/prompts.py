"""The root model's instructions and worked example, and the fallback program's prompts.

After the RLM paper's prompt and alexzhang13/rlm's minimal one, made short enough for a 2,048-token
window: what the REPL holds, the rules in a few lines and one worked example of the protocol
(code, its output, then FINAL). The example is left out when the root model's window is too
small for it (composite_cli/engine/rlm/turns.py).
"""

SYSTEM = """\
You answer a query about a long text, the Python variable `context` in a REPL. You never see it \
whole, only what your code prints. Each turn, write one ```repl block of Python; you then see its \
output. When you know the answer, write on its own line, outside any code block, FINAL(the \
answer), or FINAL_VAR(name) to answer with a REPL variable.

The REPL has:
- `context`: a {{ context_type }} of {{ context_length }} characters. Print slices, never all of it.
- `question`: the query as found at the end of the context (check it against the preview).
- `llm_query(prompt) -> str`: asks a helper model, which reads at most about \
{{ sub_context_chars }} characters: send it a slice and your question.
- `llm_query_batched(prompts) -> list[str]`: many llm_query calls at once, in parallel.
{% if recursive %}- `rlm_query(prompt, context) -> str`: a recursive RLM like you, on a sub-context.
{% endif %}- re, json, math and collections, for exact searching and counting.

You see at most {{ max_output_chars }} characters of output a turn; you have {{ max_iterations }} \
turns and {{ max_calls }} model calls in all (yours and the helper's). Write FINAL only once you \
have the answer."""

# The worked example, appended to SYSTEM when the root's window has room for it.
EXAMPLE = """\
Example. Given "The context is a string of 48000 characters ... Question: Which city hosted the \
1987 meeting?", a good first reply is:
I will ask the helper model about the chunks that share words with the question.
```repl
words = [w for w in re.findall(r"[a-z0-9]+", question.lower()) if len(w) > 3]
size = {{ chunk_chars }}
chunks = [context[i:i + size] for i in range(0, len(context), size)]
best = sorted(chunks, key=lambda c: -sum(w in c.lower() for w in words))[:4]
ask = "Copy the sentence that answers it, or reply NONE."
answers = llm_query_batched([f"{c}\\n\\nQuestion: {question}\\n{ask}" for c in best])
print([a for a in answers if "NONE" not in a])
```
It prints ['The 1987 meeting was held in Tallinn.'], and the next reply is:
FINAL(Tallinn)"""
EXAMPLE_ANSWER = "Tallinn"  # a FINAL that repeats it is the example copied, not an answer

FIRST_TURN = """\
The context is a {{ context_type }} of {{ context_length }} characters.
{% if tail %}
Its beginning:
{{ head }}
...
Its end:
{{ tail }}
{% else %}
All of it:
{{ head }}
{% endif %}

The query is in the context (usually at its end). Write your first ```repl block."""

NEXT_TURN = (
    "REPL output:\n{{ output }}\n\n"
    "If this answers the query, reply FINAL(answer). Otherwise write the next ```repl block."
)
WRAP_UP = (
    "The sub-calls stopped: the run reached its {cap}. No more llm_query calls will be answered. "
    "Give your best answer now with FINAL(answer) or FINAL_VAR(name)."
)
EARLY_FINAL = (
    "FINAL not accepted: no code has run yet, and you were shown only the beginning and end "
    "of the context. Look at it with a ```repl block first."
)
COPIED_FINAL = "FINAL not accepted: that is the worked example's answer, not this context's."
NO_CODE = (
    "No ```repl block and no FINAL line in your reply. Write code in a ```repl block, or give "
    "FINAL(answer) on its own line."
)

# -- the fallback program (composite_cli/engine/rlm/fallback.py) -------------------------------------

# What each chunk is asked. The question comes after the text: small models attend to the end.
FINDING = (
    "{chunk}\n\nQuestion: {question}\n"
    "If the text above answers the question, copy the sentence that answers it, word for word. "
    "Otherwise reply NONE."
)
# The last call: what the chunks said, then the question. Of four wordings tried on SmolLM2 with
# six notes, this one alone copied every code and number right.
ANSWER = "{notes}\n\nQuestion: {question}\nAnswer with the exact words of the text above."
NOTHING_FOUND = "(no part of the document answered the question)"
