"""Reading the answer out of a model's reply: the number it gives, the option letter it chooses,
the phrase it marks, and the normalizations that make two replies comparable.

One owner for what the eval scorers (`numeric`, `choice`, `exact`, `contains`) and a `vote`
step's majority (`extract`: number, choice, phrase, text) both need. A leaf: it imports nothing
of composite's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import cache

# --------------------------------------------------------------------------- text normalization

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_DASHES = re.compile(r"[\u2010\u2011\u2012\u2013\u2014\u2212-]")
WORD_CHAR = r"[^\W_]"  # a letter or digit; `_` is not part of a word, so `_Sicilian_` still matches
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_ANSWER_PREFIX = re.compile(r"^\s*(?:(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is|:)\s*)")


def fold(text: str) -> str:
    """Case-, accent- and typography-folded text: casefold, strip accents (Grünfeld -> grunfeld),
    curly quotes -> ', every dash -> space, runs of whitespace -> one space."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = _DASHES.sub(" ", text.translate(_QUOTES))
    return " ".join(text.split())


def normalize_exact(text: str) -> str:
    """`exact` normalization (SQuAD style): `fold`, drop a leading "the answer is"/"answer:",
    delete apostrophes, turn every other non-alphanumeric character into a space, drop the
    articles a/an/the, collapse whitespace."""
    text = _ANSWER_PREFIX.sub("", fold(text))
    text = text.replace("'", "")
    text = re.sub(r"[^\w\s]|_", " ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


# --------------------------------------------------------------------------- numbers

# Clock times and ISO dates are not quantities; they are blanked before numbers are read, so
# "65 minutes after 9:00 pm" ends in 65, not 0.
_TIMES_DATES = re.compile(
    r"(?<!\d)(?:\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?)(?!\d)", re.IGNORECASE
)
_NUMBER = re.compile(
    r"(?P<sign>(?<![\w)\]])[-\u2212])?"  # a minus that is not a hyphen or a range's dash
    r"[$€£¥]?"
    r"(?<![\w.])"  # not glued to a word ("e4", "cm2") or the middle of a number
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d{1,3}(?:[\u00a0\u2009\u202f]\d{3})+(?!\d)|\d+)"
    r"(?P<frac>\.\d+)?"
    r"(?P<exp>[eE][-+]?\d+(?![\w.]))?"
)
_NUMBER_AHEAD = r"(?=[-\u2212$€£¥]?\d)"
_STRONG_MARKERS = (
    (
        "after 'answer is'",
        re.compile(
            r"\banswer\s*(?:is|was|would\s+be|will\s+be|should\s+be|[:=])[^\n\d$€£¥]{0,40}?" + _NUMBER_AHEAD,
            re.IGNORECASE,
        ),
    ),
    ("in \\boxed{}", re.compile(r"\\boxed\{" + _NUMBER_AHEAD)),
)
_EQUALS = re.compile(r"[=≈]\s*" + _NUMBER_AHEAD)
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


def _parse_number(match: re.Match[str]) -> float:
    digits = re.sub(r"[,\u00a0\u2009\u202f]", "", match.group("int"))
    digits += (match.group("frac") or "") + (match.group("exp") or "")
    value = float(digits)
    return -value if match.group("sign") else value


def find_numbers(text: str) -> list[tuple[int, float]]:
    """Every number in the text as (start offset, value): "1,234" and "1\u202f234" (a narrow
    no-break space; a plain space is not a separator) -> 1234, "$23" -> 23,
    "23%" -> 23, "-3.5", "2.5e3"; clock times, ISO dates and digits inside words are skipped."""
    text = _TIMES_DATES.sub(lambda m: " " * len(m.group()), text)
    return [(m.start(), _parse_number(m)) for m in _NUMBER.finditer(text)]


def pick_number(text: str) -> tuple[float | None, str]:
    """The number the answer marks as its answer, and which marker marked it; (None, "no
    marker") if the answer marks none, (None, "no number") if it holds no number at all.

    Markers, in order:
    1. the number after the last "answer is X" / "Answer: X" (within 40 characters on the same
       line; "answer is 50 - 27 = 23." -> 23), else in the last \\boxed{X};
    2. a final "= X": in the last sentence that holds a number, the number after its last "="
       ("so the change is 50 - 27 = 23 (4 pens and 3 notebooks)" -> 23).
    An "=" earlier in the working is not a marker: "4 x 3 = 12 ... so she gets 23 back" has none.
    """
    text = text.replace("*", "")
    numbers = find_numbers(text)
    if not numbers:
        return None, "no number"

    def first_after(end: int) -> float | None:
        return next((value for start, value in numbers if start >= end), None)

    def after_marker(end: int) -> float | None:
        # "the answer is 50 - 27 = 23": the result of a calculation in the marker's sentence.
        stop = _SENTENCE_END.search(text, end)
        equals = [m.end() for m in _EQUALS.finditer(text, end, stop.start() if stop else len(text))]
        return first_after(equals[-1] if equals else end)

    for how, marker in _STRONG_MARKERS:
        picked = [v for m in marker.finditer(text) if (v := after_marker(m.end())) is not None]
        if picked:
            return picked[-1], how
    last_start = numbers[-1][0]
    sentence = max((m.end() for m in _SENTENCE_END.finditer(text, 0, last_start)), default=0)
    equals = [m.end() for m in _EQUALS.finditer(text, sentence)]
    if equals and (value := first_after(equals[-1])) is not None:
        return value, "after '='"
    return None, "no marker"


def answer_number(text: str) -> float | None:
    """The one number an answer gives: the number it marks (`pick_number`), else its last number
    (`find_numbers`, `*` removed as `pick_number` does); None when it holds no number."""
    marked, _ = pick_number(text)
    if marked is not None:
        return marked
    numbers = find_numbers(text.replace("*", ""))
    return numbers[-1][1] if numbers else None


def number_key(value: float) -> str:
    """A number as one comparable string: 42.0 -> "42", 0.5 -> "0.5"."""
    return str(int(value)) if value.is_integer() else repr(value)


# --------------------------------------------------------------------------- option letters

CHOICE_LETTERS = "ABCD"  # the `choice` scorer's options


@cache
def _letter_patterns(letters: str) -> tuple[tuple[str, tuple[re.Pattern[str], ...]], ...]:
    """The tiers `choose_letter` reads, for options `letters` ("ABCD": A to D; "A" is special,
    since it is also the article)."""
    last = letters[-1]
    upper, lower = f"[B-{last}]", f"[a-{last.lower()}]"
    every = f"[A-{last}]"
    # A letter after a keyword: keywords ignore case; letters do not. An uppercase letter counts
    # when it is not part of a word; a lowercase one only when no word follows it, so "the answer
    # is a knight" is not read as option A. "A" followed by a word is the article ("the answer
    # is: A draw"), unless that word cannot start a noun phrase ("A because ...", "A is ...").
    connectors = r"(?:is|was|because|since|as|and|or|but|would|seems|fits|here)\b"
    letter = (
        rf"[(\[]?\s*(?:(A)(?!{WORD_CHAR})(?!\s+(?!{connectors})[A-Za-z])|({upper})(?!{WORD_CHAR})"
        rf"|({lower})(?!\w)(?!\s+[A-Za-z]))"
    )
    option_word = r"(?:option|choice|letter)"
    # Tier 1, a statement: "the answer is B", "Answer: B", "the correct option is B", "I choose C".
    statements = (
        re.compile(
            r"(?i:\banswer\s*(?:is|would\s+be|will\s+be|should\s+be|[:=\-])?\s*[:\-]?\s*"
            rf"{option_word}?)\s*" + letter
        ),
        re.compile(
            rf"(?i:\b(?:correct|right|best|final)\s+{option_word}\s*(?:is|would\s+be|[:=\-])?\s*[:\-]?)\s*"
            + letter
        ),
        re.compile(rf"(?i:\b(?:choose|chose|select|pick|go\s+with)\s+(?:{option_word}\s*)?)" + letter),
        re.compile(rf"\\boxed\{{\s*({every})\s*\}}"),
    )
    # Tier 2, a label at the start of the reply or of a line: "B", "(B)", "B)", "B.", "B:".
    labels = (re.compile(rf"(?:^|\n)\s*[(\[]?({every})(?:[)\].:]|\s*$|\s*\n)"),)
    # Tier 3, a mention: "option B", "choice C" ("option A is wrong" loses to a label or statement).
    mentions = (re.compile(rf"(?i:\b{option_word}\s*[:\-]?)\s*" + letter),)
    # Tier 4, anywhere: "(B)", a bare B/C/D that is not part of a word or a hyphenated token, or
    # an "A" that ends a clause or is followed by "is correct" (otherwise "A" is the article).
    not_in_word = rf"(?<!{WORD_CHAR})(?<!['\-])"  # not part of a word, a contraction or "3-D"
    bare = (
        re.compile(rf"\(({every})\)"),
        re.compile(rf"{not_in_word}({upper})(?!{WORD_CHAR})(?!['\-]\w)"),
        re.compile(rf"{not_in_word}(A)(?=\)|\s*$|[.,;:!?](?:\s|$)|\s+is\s+(?:correct|right|the))"),
    )
    return (("statement", statements), ("label", labels), ("mention", mentions), ("letter", bare))


def _letters(patterns: Iterable[re.Pattern[str]], text: str) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        for match in pattern.finditer(text):
            letter = next((g for g in match.groups() if g), "").upper()
            if letter and letter not in found:
                found.append(letter)
    return found


def choose_letter(text: str, letters: str = CHOICE_LETTERS) -> tuple[list[str], str]:
    """The option letters the answer states, and how they were found (`how` is empty if none).

    `letters` are the options, from A on ("ABCD", "ABCDE"). The first tier that finds any letter
    decides: a statement ("the answer is B", "the correct option is B", "I choose B",
    \\boxed{B}) beats a "B)" label at the start of a line, which beats a mention ("option B"),
    which beats a bare "B" or "(B)" anywhere. More than one distinct letter in the deciding tier
    means the answer is ambiguous (e.g. echoed options).
    """
    if not ("B" <= letters[-1] <= "Z") or letters != "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(letters)]:
        raise ValueError(f"options must be letters from A on, got {letters!r}")
    text = text.replace("*", "").replace("`", "")
    for how, patterns in _letter_patterns(letters):
        found = _letters(patterns, text)
        if found:
            return found, how
    return [], ""


# --------------------------------------------------------------------------- marked phrase

_MARKER = re.compile(r"\banswer\s*(?:is|was|would be|will be|should be|[:=])\s*", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def marked_text(text: str) -> str | None:
    """What the answer marks as its answer: the text of its last \\boxed{}, else the rest of the
    line after its last "answer is"/"Answer:" marker; None when it marks nothing."""
    text = text.replace("*", "")
    boxed = _BOXED.findall(text)
    if boxed:
        return str(boxed[-1])
    markers = list(_MARKER.finditer(text))
    if not markers:
        return None
    return text[markers[-1].end() :].split("\n", 1)[0]


# --------------------------------------------------------------------------- one answer

# What `extract_answer` can read, with what each means (a vote step's `extract` choices).
EXTRACTS = (
    ("text", "the whole answer"),
    ("number", "a number"),
    ("choice", "a letter A-E"),
    ("phrase", "a short phrase"),
)
VOTE_LETTERS = "ABCDE"


def extract_answer(text: str, how: str) -> str | None:
    """The answer of kind `how` in a reply, as a comparable string; None when it gives none.

    - `number`: `answer_number` (the marked number, else the last one), as `number_key`.
    - `choice`: `choose_letter` over A-E; a reply that states two letters at its strongest tier
      is ambiguous and gives none.
    - `phrase`: `marked_text`, else the reply's last non-empty line; `normalize_exact`.
    - `text`: the whole reply, `normalize_exact`.
    """
    if how == "text":
        return normalize_exact(text) or None
    if how == "number":
        value = answer_number(text)
        return None if value is None else number_key(value)
    if how == "choice":
        letters, _ = choose_letter(text, VOTE_LETTERS)
        return letters[0] if len(letters) == 1 else None
    if how == "phrase":
        marked = marked_text(text)
        lines = [line for line in text.strip().splitlines() if line.strip()]
        phrase = marked if marked is not None else (lines[-1] if lines else "")
        return normalize_exact(phrase) or None
    raise ValueError(f"unknown extract {how!r}")
