"""Grounded answers: verbatim supporting quotes, and a check of the generated text against them.

Why this exists: retrieval finds the right document, but a model, small or large, still writes
numbers the document never gave and attaches the citation anyway ("a desk and chair: $200/month").
A wrong answer with a citation is worse than none, so the gateway checks every answer itself:

1. ``select_quotes``: before generation, the sentences (list items, table rows) of the prompt's
   sources that answer the question, chosen by word overlap with the question (rare words
   weigh more; a figure or date counts when one is asked for). Cosine with the question through
   the embedder was measured too and left out of the gateway's path: on the HR evaluation set
   the quotes held the expected fact for 35 of 43 questions with it and 36 without, at 65-104
   ms instead of under 1 ms (``select_quotes`` still takes vectors for callers that have them).
   Quotes are exact substrings of the source text the model was shown and carry that source's
   number, so ``[2]`` names the same chunk in the citations, the quotes and the answer. Nothing
   else can be quoted: the sources are already only what the caller may read (the ACL is the
   index's prefilter).
2. ``check``: after generation, each sentence of the answer is supported when every number,
   amount, date, name and identifier in it appears in the quotes, it is as negative as they are,
   and its wording is close to a quote (word overlap, else cosine with the embedder already
   served, asked only for such sentences). No NLI or cross-encoder model in the package lists
   comes from a source we could vouch for, and nothing may download at run time; exact matching
   of facts is what catches invented figures, which is the failure that matters.
3. ``compose``: with ``enforce``, an answer that fails is not returned as fact: the caller gets
   the quotes and one line saying no verified summary could be composed. With ``report`` the
   generated text is returned as is, with the same ``grounding`` figures beside it.

Pure functions over strings and vectors; the pipeline calls them and owns the embedder calls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmctl.gateway.prompt import Source

MODES = ("enforce", "report")
UNVERIFIED_LINE = (
    "No verified summary could be composed from the sources; these are the passages that "
    "answer your question, quoted verbatim:"
)
#: cosine (MiniLM, normalised) at or above which an answer sentence counts as saying what a
#: source sentence says; below it, word overlap may still support it (``_LEXICAL_SUPPORT``).
SUPPORT_COSINE = 0.6
_LEXICAL_SUPPORT = 0.7
MAX_QUOTES = 3
#: a quote after the best is kept only when it scores at least this share of the best
RELATIVE_QUOTE_SCORE = 0.7
_MAX_QUOTE_CHARS = 400

AsyncEmbed = Callable[[list[str]], Awaitable[Any]]  # texts -> (n, d) normalised vectors
_MAX_EVIDENCE = 24  # source sentences compared with an answer sentence by the embedder

# -- text units ----------------------------------------------------------------------------------

_CITE = re.compile(r"\s*\[(\d{1,2})\](?:\s*,?\s*\[(\d{1,2})\])*")
_CITE_ONE = re.compile(r"\[(\d{1,2})\]")
# a sentence ends at . ! ? ; or : followed by a space and something that starts a new one
_SENT_END = re.compile(r"(?<=[.!?;])\s+(?=[\"'(*\[A-Z0-9$£€])|(?<=:)\s+(?=[A-Z*])")
_BULLET = re.compile(r"\s+(?=(?:[-*•]|\d{1,2}\.)\s+\S)")
_TABLE_ROW_GAP = re.compile(r"(?<=\|)\s+(?=\|)")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’-]*|\d+(?:[.,]\d+)*")
_LINE = re.compile(r"\n(?=\s*(?:[-*•|#]|\d{1,2}\.)\s)")
_TABLE_START = re.compile(r"(?<=[.!?:;])\s+(?=\|\s)")  # a table right after a sentence


def units(text: str) -> list[str]:
    """The sentences, list items and table rows of ``text``, each an exact substring of it."""
    spans: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        for line in _split_keep(block, _LINE):
            items = [line] if line.lstrip().startswith("|") else _split_keep(line, _BULLET)
            for item in items:
                for piece in _split_keep(item, _TABLE_START):
                    rows = _table_rows(piece) if piece.lstrip().startswith("|") else [piece]
                    for row in rows:
                        if row.lstrip().startswith("|"):
                            spans.append(row)
                        else:
                            spans.extend(_split_keep(row, _SENT_END))
    out = []
    for span in spans:
        s = span.strip().strip("#").strip()
        if len(s) >= 12 and not _TABLE_RULE.match(s) and re.search(r"[A-Za-z0-9]", s):
            out.append(s)
    return out


def _table_rows(text: str) -> list[str]:
    """Rows of a markdown table, also when whitespace was collapsed ("| a | b | | c | d |"); the
    text after the last row, which collapsing joined to it, is a piece of its own. Rows have the
    first row's number of pipes."""
    rows = _split_keep(text, _TABLE_ROW_GAP)
    pipes = rows[0].count("|") if rows else 0
    out: list[str] = []
    for row in rows:
        if pipes >= 2 and row.count("|") > pipes:
            return rows  # a cell with "| |" in it: not a table this splitter can read
        if pipes >= 2 and row.count("|") == pipes and not row.rstrip().endswith("|"):
            cut = [m.end() for m in re.finditer(r"\|", row)][pipes - 1]
            out += [row[:cut], row[cut:]]
        else:
            out.append(row)
    return out


def _split_keep(text: str, pattern: re.Pattern[str]) -> list[str]:
    return [p for p in pattern.split(text) if p and p.strip()]


_STOP = frozenset(
    """a an the and or of to in on at for by with from as is are was were be been being it its this
    that these those there here what which who whom whose when where why how do does did done can
    could may might must shall should will would i me my we our you your they them their he she
    his her not no yes if than then so such any all each every per about into over under up out
    many much long get gets got have has had one more most other some only also very just
    please tell know""".split()
)


def _stem(word: str) -> str:
    """A crude English stem, enough to match "used" with "use" and "carried" with "carry"."""
    w = word.lower().replace("’", "'")
    for suffix, repl in (
        ("'s", ""),
        ("ies", "y"),
        ("ied", "y"),
        ("ing", ""),
        ("ed", ""),
        ("es", ""),
        ("s", ""),
    ):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            w = w[: -len(suffix)] + repl
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w[:6]


def content_words(text: str) -> set[str]:
    """Stemmed words that carry meaning (stop words and citation markers left out)."""
    return {_stem(w) for w in _WORD.findall(_CITE_ONE.sub(" ", text)) if w.lower() not in _STOP}


# -- facts: numbers, amounts, dates, names --------------------------------------------------------

_NUMBER = re.compile(r"(?<![A-Za-z0-9])\d+(?:[.,]\d+)*")
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_CAPITAL = re.compile(r"\b[A-Z][A-Za-z0-9&'’.-]*[A-Za-z0-9]|\b[A-Z]\b")
# Capitalised words that start sentences without naming anything.
_COMMON_CAPS = frozenset(
    """a an the and or but if in on at for to of by with from as is are it its this that these
    those there here what which who when where why how yes no not you your yours we our i employees
    employee according based each every all any some both either neither please note also however
    after before during until unless while since per each under over up only if source sources
    answer based""".split()
)


def _number_value(token: str) -> str:
    t = token.replace(",", "")
    try:
        value = float(t)
    except ValueError:
        return token
    return f"{value:g}"


def numbers(text: str) -> set[str]:
    """The numeric values in ``text``, normalised ("155,000", "155000" and "155000.0" agree);
    number words up to twenty count as their value ("ten" is 10)."""
    found = {_number_value(m.group()) for m in _NUMBER.finditer(text)}
    for word in _WORD.findall(text.lower()):
        if word in _NUMBER_WORDS:
            found.add(f"{_NUMBER_WORDS[word]:g}")
    return found


def facts(sentence: str) -> list[str]:
    """What in ``sentence`` must be found in the cited text: its numbers (amounts, percentages
    and dates included) and its capitalised words (names, months, products)."""
    text = _CITE_ONE.sub(" ", sentence)
    out = [m.group() for m in _NUMBER.finditer(text)]
    out += [m.group() for m in _CAPITAL.finditer(text) if m.group().lower() not in _COMMON_CAPS]
    return out


@dataclass(frozen=True)
class _Evidence:
    """What a sentence may draw on: numbers and words of the cited text (and of the question:
    repeating the question's own terms is not an invented fact)."""

    numbers: frozenset[str]
    words: frozenset[str]

    @classmethod
    def of(cls, texts: Sequence[str]) -> _Evidence:
        joined = "\n".join(texts)
        words = {w.lower().replace("’", "'") for w in _WORD.findall(joined)}
        return cls(frozenset(numbers(joined)), frozenset(words | {_stem(w) for w in words}))

    def has(self, fact: str) -> bool:
        if _NUMBER.fullmatch(fact):
            return _number_value(fact) in self.numbers
        word = fact.lower().replace("’", "'").strip(".'")
        parts = [p for p in re.split(r"[-'.]", word) if p]
        return word in self.words or all(p in self.words or _stem(p) in self.words for p in parts)


# -- quotes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """A verbatim span of source ``number``'s text that answers the question."""

    number: int
    text: str
    score: float

    def as_dict(self, source: Source) -> dict[str, Any]:
        return {
            "number": self.number,
            "doc_id": source.doc_id,
            "chunk_id": source.chunk_id,
            "text": self.text,
        }


@dataclass(frozen=True)
class Candidate:
    number: int
    text: str
    lexical: float


#: a question asking for one figure, date or name (sizes the output budget, weighs quotes)
ASKS_FACT = re.compile(
    r"\b(how (many|much|long|often|soon|far|old)|when|until|what (is|are) the|which|who)\b", re.I
)
_ASKS_NUMBER = re.compile(
    r"\b(how (many|much|long|often|soon|far|old)|what (percent|amount|is the (limit|maximum|minimum)))",
    re.I,
)
_ASKS_DATE = re.compile(r"\b(until when|by when|when|deadline|what date|which day)\b", re.I)
_DATE = re.compile(
    r"\b(\d{1,2} (jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*|"
    r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{1,2}|\d{4}-\d{2}-\d{2}|"
    r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday)|end of)",
    re.I,
)


def candidates(question: str, sources: Sequence[Source], limit: int = 8) -> list[Candidate]:
    """Each source's units scored by the question's content words they hold, weighted by how
    rare each word is among the shown units (a word every unit has, like "leave" in the leave
    policy, says little) with the source's heading counting half; a unit holding a figure
    scores more when the question asks for one ("how many", "until when"). The best ``limit``
    (ties: better-ranked source first) go on to be embedded."""
    want = content_words(question)
    rows: list[tuple[int, int, str, set[str], set[str]]] = []
    for source in sources:
        head = content_words(source.heading)
        for i, unit in enumerate(units(source.text)):
            rows.append((source.number, i, unit, content_words(unit), head))
    if not rows or not want:
        return []
    df: dict[str, int] = {}
    for *_, have, _head in rows:
        for w in have & want:
            df[w] = df.get(w, 0) + 1
    idf = {w: math.log(1 + len(rows) / (1 + df.get(w, 0))) for w in want}
    total = sum(idf.values())
    number_q, date_q = _ASKS_NUMBER.search(question), _ASKS_DATE.search(question)
    scored: list[tuple[float, int, int, Candidate]] = []
    for number, i, unit, have, head in rows:
        lexical = sum(idf[w] for w in want & have) + 0.5 * sum(idf[w] for w in (want & head) - have)
        lexical /= total
        bare = _CITE_ONE.sub(" ", unit)
        if (number_q and _NUMBER.search(bare)) or (date_q and _DATE.search(bare)):
            lexical += 0.15
        scored.append((-lexical, number, i, Candidate(number, unit[:_MAX_QUOTE_CHARS], lexical)))
    scored.sort(key=lambda t: t[:3])
    return [t[3] for t in scored[:limit]]


def select_quotes(
    cands: Sequence[Candidate],
    question_vector: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
    max_quotes: int = MAX_QUOTES,
) -> list[Quote]:
    """The quotes: candidates ranked by word overlap plus, with vectors, cosine to the question.
    The best always; the others only when they score close to it (a second source sentence is
    evidence only if it answers nearly as well), at most two from one source."""
    if not cands:
        return []
    scores = [c.lexical for c in cands]
    if question_vector is not None and vectors is not None and len(vectors) == len(cands):
        cos = np.asarray(vectors) @ np.asarray(question_vector)
        scores = [s + float(c) for s, c in zip(scores, cos, strict=True)]
    order = sorted(range(len(cands)), key=lambda i: (-scores[i], cands[i].number))
    best = scores[order[0]]
    picked: list[Quote] = []
    per_source: dict[int, int] = {}
    for i in order:
        if len(picked) >= max_quotes or (picked and scores[i] < best * RELATIVE_QUOTE_SCORE):
            break
        c = cands[i]
        if per_source.get(c.number, 0) >= 2:
            continue
        per_source[c.number] = per_source.get(c.number, 0) + 1
        picked.append(Quote(c.number, c.text, round(scores[i], 4)))
    return sorted(picked, key=lambda q: (q.number, -q.score))


# -- the check -----------------------------------------------------------------------------------


@dataclass
class Grounding:
    """The outcome of checking one answer: ``score`` is the share of its sentences supported;
    ``grounded`` only when all are; ``unsupported`` names the spans that were not."""

    mode: str
    score: float = 0.0
    grounded: bool = False
    unsupported: list[str] = field(default_factory=list)
    replaced: bool = False  # enforce: the generated text was withheld and the quotes returned
    sentences: list[str] = field(default_factory=list)  # the answer's, repeats dropped
    check_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "score": round(self.score, 4),
            "grounded": self.grounded,
            "unsupported": list(self.unsupported),
            "replaced": self.replaced,
        }

    @property
    def outcome(self) -> str:
        """One word for metrics and the audit record."""
        if self.grounded:
            return "grounded"
        return "replaced" if self.replaced else "ungrounded"


def answer_sentences(answer: str) -> list[str]:
    """The answer's sentences, repeats dropped (a looping model says one thing once)."""
    seen: set[str] = set()
    out = []
    for s in units(answer.replace("\n", "\n\n")):
        key = " ".join(content_words(s)) or s.lower()
        if key in seen:
            continue
        seen.add(key)
        out.append(s)
    return out


def cited_numbers(sentence: str) -> set[int]:
    return {int(n) for n in _CITE_ONE.findall(sentence)}


async def check(
    answer: str,
    question: str,
    sources: Sequence[Source],
    quotes: Sequence[Quote],
    *,
    mode: str = "enforce",
    embed: AsyncEmbed | None = None,
) -> Grounding:
    """Score ``answer`` against its quotes; ``embed`` is awaited only for sentences whose facts
    check out but whose words do not match a quote (most answers need no embedder call).

    A sentence is supported when its facts (numbers, amounts, percentages, dates, names,
    identifiers) all appear in the quotes (the question's own words count too: repeating them
    invents nothing), it is as negative as the quotes it shares words with, and it says what the
    quotes say: at least ``_LEXICAL_SUPPORT`` of its content words are in them, or its cosine
    with one of them is at least ``SUPPORT_COSINE``. The quotes, not the whole sources: a figure
    that is somewhere in a source but not in the sentence that answers is how "5 weeks" passes
    for "26 weeks". A sentence that only introduces ("The answer is:") is not scored. An answer
    to "how many"/"when" that states no figure or date does not answer (``_answers_the_type``).
    """
    g = Grounding(mode)
    sentences = [s for s in answer_sentences(answer) if not s.rstrip().endswith(":")]
    if not sentences:
        g.unsupported = ["(no answer was generated)"]
        return g
    quoted = _Evidence.of([q.text for q in quotes])
    quote_words = content_words(" ".join(q.text for q in quotes))
    question_words = {w.lower() for w in _WORD.findall(question)}
    pending: list[tuple[int, str]] = []  # sentences that need the embedder
    verdicts: list[str | None] = []  # None: supported; else the unsupported span
    for sentence in sentences:
        missing = [
            f for f in facts(sentence) if f.lower() not in question_words and not quoted.has(f)
        ]
        bare = _CITE.sub("", sentence).strip() or sentence
        if missing:
            verdicts.append(", ".join(dict.fromkeys(missing)))
            continue
        words = content_words(sentence) - question_words_stems(question)
        if not _polarity_backed(sentence, quotes):
            verdicts.append(bare[:200])  # "you can" where every quote says "not allowed"
            continue
        if words and len(words & quote_words) / len(words) >= _LEXICAL_SUPPORT:
            verdicts.append(None)
            continue
        verdicts.append(bare[:200])
        if not words:  # only the question's words, "Yes, you can ...": nothing a quote backs
            continue
        pending.append((len(verdicts) - 1, bare))
    if pending and embed is not None and quotes:
        texts = [p[1] for p in pending] + [q.text for q in quotes]
        vectors = np.asarray(await embed(texts))
        sv, qv = vectors[: len(pending)], vectors[len(pending) :]
        for (i, _), v in zip(pending, sv, strict=True):
            if float(np.max(qv @ v)) >= SUPPORT_COSINE:
                verdicts[i] = None
    kind = _answers_the_type(question, " ".join(sentences))
    if kind is not None:
        verdicts.append(kind)
    g.unsupported = [v for v in verdicts if v is not None]
    supported = len(verdicts) - len(g.unsupported)
    g.score = supported / len(verdicts)
    g.grounded = supported == len(verdicts)
    g.sentences = sentences
    return g


_NEGATION = re.compile(
    r"\b(not|no|never|none|nothing|cannot|can't|don't|doesn't|isn't|aren't|won't|mustn't|"
    r"prohibited|forbidden|unpaid|without)\b|n't\b",
    re.I,
)


def _polarity_backed(sentence: str, quotes: Sequence[Quote]) -> bool:
    """Whether some quote that shares a word with ``sentence`` is as negative as it: "SMS codes
    are allowed" is not backed by "SMS codes are not allowed", however similar the words."""
    words = content_words(sentence)
    negative = bool(_NEGATION.search(sentence))
    related = [q for q in quotes if content_words(q.text) & words]
    return not related or any(bool(_NEGATION.search(q.text)) == negative for q in related)


_TIME = re.compile(r"\b\d{1,2}:\d{2}\b")


def _answers_the_type(question: str, answer: str) -> str | None:
    """None when the answer holds the kind of fact the question asks for; else what it lacks."""
    text = _CITE_ONE.sub(" ", answer)
    has_number = bool(numbers(text))
    if _ASKS_NUMBER.search(question) and not has_number:
        return "(states no figure)"
    if _ASKS_DATE.search(question) and not (has_number or _DATE.search(text) or _TIME.search(text)):
        return "(states no date or time)"
    return None


def question_words_stems(question: str) -> set[str]:
    """The question's content words: an answer may repeat them without a quote to back them."""
    return content_words(question)


def compose(answer: str, grounding: Grounding, quotes: Sequence[Quote]) -> str:
    """The text the caller gets. ``enforce`` and not grounded: the quotes under one line saying
    no verified summary could be composed; grounded: the answer with repeated sentences dropped;
    ``report``: the answer as generated."""
    if grounding.grounded:
        return " ".join(grounding.sentences) if grounding.sentences else answer
    if grounding.mode != "enforce":
        return answer
    grounding.replaced = True
    return quotes_answer(quotes)


QUOTES_LINE = "The sources say, verbatim:"


def quotes_preface(quotes: Sequence[Quote]) -> str:
    """What an ``enforce`` stream sends first, while the answer is generated and checked: the
    verbatim quotes (source text, numbered like the citations), which need no check."""
    if not quotes:
        return ""
    return "\n".join([QUOTES_LINE, *(f'[{q.number}] "{q.text}"' for q in quotes)])


def quotes_answer(quotes: Sequence[Quote]) -> str:
    lines = [UNVERIFIED_LINE]
    lines += [f'[{q.number}] "{q.text}"' for q in quotes]
    return "\n".join(lines)
