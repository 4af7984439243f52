"""Prompt composition: short system instructions, numbered sources, the question.

Why it looks like this:
- The served model may be tiny (SmolLM2-135M locally, 2048-token context), so the prompt is
  bounded: each source is cut to ``max_source_chars`` and sources are added in score order only
  while the whole prompt stays within ``max_input_tokens`` (estimated as characters divided by a
  pessimistic ``chars_per_token``; the gateway has no tokenizer of the served model). A source
  that does not fit is dropped, not cut mid-way, below the first one.
- The citations returned to the caller are exactly ``PromptPlan.sources``: what the model saw, in
  the numbering it saw. Nothing retrieved but not shown is ever cited.
- Below ``min_score`` a hit is not evidence; with no evidence left the gateway answers
  ``NO_SOURCE_ANSWER`` itself and never asks the model to guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NO_SOURCE_ANSWER = (
    "No source available: I could not find a document you are allowed to read that answers "
    "this question, so I will not guess."
)

SYSTEM_PROMPT = (
    "You answer questions about internal documents. Use only the numbered sources below. "
    "Cite the sources you use as [1], [2]. If the sources do not contain the answer, say so."
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
    prompt_tokens: int  # an estimate (see module docstring)


def _field(hit: Any, *names: str, default: Any = "") -> Any:
    for name in names:
        value = hit.get(name) if isinstance(hit, dict) else getattr(hit, name, None)
        if value is not None:
            return value
    return default


def estimate_tokens(text: str, chars_per_token: float) -> int:
    return math.ceil(len(text) / chars_per_token)


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


def build_prompt(
    question: str,
    hits: Sequence[Any],
    *,
    max_input_tokens: int,
    max_source_chars: int,
    chars_per_token: float,
    frame: ChatFrame = PLAIN_FRAME,
) -> PromptPlan:
    """Fit as many hits (already filtered and ordered) as the token budget allows."""
    budget_chars = int(max_input_tokens * chars_per_token)
    blocks: list[str] = []
    sources: list[Source] = []
    for hit in hits:
        number = len(sources) + 1
        title = str(_field(hit, "title"))
        heading = str(_field(hit, "heading"))
        label = f"{title} — {heading}" if heading else title
        body = _shorten(str(_field(hit, "text")), max_source_chars)
        block = f"[{number}] {label}: {body}"
        if len(_render(question, [*blocks, block], frame)) > budget_chars:
            room = budget_chars - len(_render(question, [*blocks, f"[{number}] {label}: "], frame))
            if sources or room < 80:
                break
            block = f"[{number}] {label}: {_shorten(body, room)}"  # the best hit, shortened
        blocks.append(block)
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
    return PromptPlan(text, tuple(sources), estimate_tokens(text, chars_per_token))
