"""Prompt composition: short system instructions, numbered sources, the question.

Why it looks like this:
- The served model may be tiny (SmolLM2-135M locally, 2048-token context), so the prompt is
  bounded: each source is cut to ``max_source_chars`` and sources are added in score order only
  while the whole prompt stays within ``max_input_tokens``, counted in the served model's tokens
  (``llmctl.gateway.tokens``: its own tokenizer where configured, else a byte-based upper
  bound). Characters are no measure: 1,950 emoji are 5,850 SmolLM2 tokens. A source that does
  not fit is dropped, not cut mid-way, below the first one; the first is shortened to fit (the
  longest cut that fits, found by bisecting on characters and counting tokens).
- Each source is counted once on its own and the choice is made on the sum; the finished prompt
  is then counted whole, and that count is both the check (a source is dropped if joining the
  parts cost more than their sum) and ``prompt_tokens``. So a prompt is never over the budget
  and the reported count is the real one, for about two tokenizations of the prompt.
- A question that does not fit the budget on its own, with no source at all, is refused (400)
  with its token count: the model could not even read it, and the caller can shorten it.
- The citations returned to the caller are exactly ``PromptPlan.sources``: what the model saw, in
  the numbering it saw. Nothing retrieved but not shown is ever cited.
- Below ``min_score`` a hit is not evidence; with no evidence left the gateway answers
  ``NO_SOURCE_ANSWER`` itself and never asks the model to guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from llmctl.gateway.protocol import Refusal
from llmctl.gateway.tokens import TokenCounter

NO_SOURCE_ANSWER = (
    "No source available: I could not find a document you are allowed to read that answers "
    "this question, so I will not guess."
)

SYSTEM_PROMPT = (
    "You answer questions about internal documents. Use only the numbered sources below. "
    "Answer in one or two short sentences. Give the exact figure, date or name as the source "
    "writes it, and cite its source as [1] or [2]. If the sources do not contain the answer, "
    "say so."
)


@dataclass(frozen=True)
class Source:
    """A hit as the gateway uses it: numbered, possibly shortened, with its citation fields."""

    number: int
    doc_id: str
    chunk_id: str
    title: str
    path: str
    heading: str
    text: str
    score: float
    chunk_hash: str

    def citation(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "title": self.title,
            "path": self.path,
            "heading": self.heading,
            "chunk_id": self.chunk_id,
            "score": round(self.score, 4),
        }


@dataclass(frozen=True)
class PromptPlan:
    text: str
    sources: tuple[Source, ...]
    prompt_tokens: int  # counted by the gateway's TokenCounter (see module docstring)


def _field(hit: Any, *names: str, default: Any = "") -> Any:
    for name in names:
        value = hit.get(name) if isinstance(hit, dict) else getattr(hit, name, None)
        if value is not None:
            return value
    return default


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut + "…"


_SYS_MARK = "\x00llmctl-system\x00"
_USER_MARK = "\x00llmctl-user\x00"


@dataclass(frozen=True)
class ChatFrame:
    """The served model's chat template, pre-rendered once around two markers.

    Rendering a Jinja template per request costs milliseconds; the frame is computed at start-up
    with ``llmctl.local.prompt.format_chat`` (the model's own template, ChatML by default) and a
    request only concatenates strings.
    """

    prefix: str
    middle: str
    suffix: str

    @classmethod
    def from_template(cls, template: str | None = None) -> ChatFrame:
        if template is None:
            return CHATML_FRAME  # what format_chat renders with its ChatML default, without Jinja
        from llmctl.local.prompt import format_chat

        text = format_chat(
            [{"role": "system", "content": _SYS_MARK}, {"role": "user", "content": _USER_MARK}],
            template,
        )
        if (
            text.count(_SYS_MARK) != 1
            or text.count(_USER_MARK) != 1
            or text.index(_SYS_MARK) > text.index(_USER_MARK)
        ):
            raise ValueError(
                "the chat template does not place one system and one user message in order"
            )
        prefix, rest = text.split(_SYS_MARK)
        middle, suffix = rest.split(_USER_MARK)
        return cls(prefix, middle, suffix)

    def render(self, system: str, user: str) -> str:
        return f"{self.prefix}{system}{self.middle}{user}{self.suffix}"


CHATML_FRAME = ChatFrame(
    "<|im_start|>system\n", "<|im_end|>\n<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"
)
PLAIN_FRAME = ChatFrame("", "\n\nQuestion: ", "\nAnswer:")


def _render(question: str, blocks: Sequence[str], frame: ChatFrame) -> str:
    return frame.render(f"{SYSTEM_PROMPT}\n\nSources:\n" + "\n".join(blocks), question)


def select_hits(hits: Sequence[Any], min_score: float) -> list[Any]:
    """Hits that count as evidence, best first; duplicates of one chunk collapse to one."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for hit in sorted(hits, key=lambda h: -float(_field(h, "score", default=0.0))):
        key = (str(_field(hit, "doc_id")), str(_field(hit, "chunk_id")))
        if float(_field(hit, "score", default=0.0)) < min_score or key in seen:
            continue
        seen.add(key)
        kept.append(hit)
    return kept


# Shorter than this a cut source is no evidence: the first hit is dropped rather than cut below it.
_MIN_SOURCE_CHARS = 80


def _fit_first(
    question: str, head: str, body: str, budget: int, tokens: TokenCounter, frame: ChatFrame
) -> str | None:
    """The longest cut of ``body`` (at least ``_MIN_SOURCE_CHARS``) with which the prompt, counted
    whole, stays within ``budget``; None if even the shortest does not fit. Bisection on the
    character limit: the token count grows with it (a few counts of one prompt, and only for the
    first source when it does not fit as it is)."""

    def fits(limit: int) -> bool:
        text = _render(question, [head + _shorten(body, limit)], frame)
        return tokens.count(text) <= budget

    lo, hi = _MIN_SOURCE_CHARS, len(body)
    if hi < lo or not fits(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return _shorten(body, lo)


def build_prompt(
    question: str,
    hits: Sequence[Any],
    *,
    max_input_tokens: int,
    max_source_chars: int,
    tokens: TokenCounter,
    frame: ChatFrame = PLAIN_FRAME,
) -> PromptPlan:
    """Fit as many hits (already filtered and ordered) as ``max_input_tokens`` allows, counted
    with ``tokens``. Raises ``Refusal`` (400) when the question alone does not fit."""
    budget = max_input_tokens
    used = tokens.count(_render(question, [], frame))
    if used > budget:
        raise Refusal(
            400,
            "bad_request",
            f"question is {tokens.count(question)} tokens; with the gateway's instructions the "
            f"prompt would be {used} tokens, over the model's input limit of {budget} tokens",
        )
    blocks: list[str] = []
    sources: list[Source] = []
    first: tuple[str, str] | None = None  # (head, body) of source 1, should it need cutting
    for hit in hits:
        number = len(sources) + 1
        title = str(_field(hit, "title"))
        heading = str(_field(hit, "heading"))
        label = f"{title} — {heading}" if heading else title
        head = f"[{number}] {label}: "
        body = _shorten(str(_field(hit, "text")), max_source_chars)
        cost = tokens.count(("\n" if blocks else "") + head + body)  # blocks are joined by \n
        if not sources:
            first = (head, body)
        if used + cost > budget:
            if sources:
                break
            cut = _fit_first(question, head, body, budget, tokens, frame)
            if cut is None:
                break
            body = cut
            cost = tokens.count(head + body)
        blocks.append(head + body)
        used += cost
        sources.append(
            Source(
                number=number,
                doc_id=str(_field(hit, "doc_id")),
                chunk_id=str(_field(hit, "chunk_id")),
                title=title,
                path=str(_field(hit, "path", "source_path")),
                heading=heading,
                text=body,
                score=float(_field(hit, "score", default=0.0)),
                chunk_hash=str(_field(hit, "chunk_hash", "content_hash", "hash")),
            )
        )
    text = _render(question, blocks, frame)
    count = tokens.count(text)
    # The parts were counted one by one; joined, a tokenizer may merge across a boundary
    # differently. The whole prompt is what the model reads, so it decides.
    while count > budget and len(blocks) > 1:
        blocks.pop()
        sources.pop()
        text = _render(question, blocks, frame)
        count = tokens.count(text)
    if count > budget and first is not None:  # one source, over by the joining only
        cut = _fit_first(question, first[0], first[1], budget, tokens, frame)
        blocks = [first[0] + cut] if cut is not None else []
        sources = [replace(sources[0], text=cut)] if cut is not None else []
        text = _render(question, blocks, frame)
        count = tokens.count(text)
    return PromptPlan(text, tuple(sources), count)
