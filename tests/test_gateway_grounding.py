"""Grounded answers: quotes chosen from the sources, the check of the generated text, and what
the caller, the audit trail and the metrics see with ``enforce`` and ``report``.

The pure functions are tested on text; the gateway over real HTTP with a real LanceDB index and
MiniLM in-process. The LLM is ``ScriptedLLM``, which streams a fixed answer: the check is under
test, so the answer must be known (a right one and an invented one); the real model's path is
covered by the stack tests and measured by the quality gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_gateway_support import (
    CORPUS,
    ServerThread,
    build_index,
    in_process_retriever,
    make_config,
    token,
)

from llmctl.gateway import grounding as G
from llmctl.gateway.app import create_app
from llmctl.gateway.audit import read_records
from llmctl.gateway.prompt import Source

TABLE = (
    "| grade | title | minimum | midpoint | maximum |\n| --- | --- | --- | --- | --- |\n"
    "| G3 | Assistant Vice President | 122,000 | 143,000 | 164,000 |\n"
    "| G4 | Vice President | 155,000 | 182,000 | 209,000 |\n\n"
    "Technology roles carry a **market premium of 8%** applied to all three points of the band."
)
LEAVE = (
    "- Full-time employees receive **25 working days** of paid annual leave per calendar year.\n"
    "- Carried-over days must be taken by **31 March**; later they are forfeited.\n"
    "- SMS codes are **not allowed** as a second factor."
)


def source(number: int, text: str, doc_id: str = "hr/doc") -> Source:
    return Source(number, doc_id, f"{doc_id}#{number}", "Title", "p.md", "Heading", text, 0.9, "h")


def quotes_for(question: str, *texts: str) -> tuple[list[Source], list[G.Quote]]:
    sources = [source(i, t) for i, t in enumerate(texts, 1)]
    return sources, G.select_quotes(G.candidates(question, sources))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- pure functions ------------------------------------------------------------------------------


def test_units_are_sentences_items_and_table_rows_verbatim() -> None:
    text = " ".join(TABLE.split())  # the prompt collapses whitespace; rows must still split
    found = G.units(text)
    assert "| G4 | Vice President | 155,000 | 182,000 | 209,000 |" in found
    assert all(u in text for u in found)
    assert not any(u.startswith("| ---") for u in found)
    items = G.units(LEAVE)
    assert len(items) == 3 and all(u in LEAVE for u in items)


def test_quotes_are_the_answering_sentence_from_its_source() -> None:
    sources, quotes = quotes_for(
        "What is the salary band for a Vice President (G4)?", LEAVE, " ".join(TABLE.split())
    )
    assert quotes, "no quote chosen"
    best = max(quotes, key=lambda q: q.score)
    assert best.number == 2 and "155,000" in best.text
    for q in quotes:  # verbatim, from the source whose number it carries
        assert q.text in sources[q.number - 1].text
    _, quotes = quotes_for("Until when can I use carried-over leave days?", LEAVE)
    assert any("31 March" in q.text for q in quotes)


def test_an_invented_figure_is_unsupported_and_named() -> None:
    q = "How many days of paid annual leave does a full-time employee get?"
    sources, quotes = quotes_for(q, LEAVE)
    bad = run(G.check("A full-time employee gets 30 days of annual leave [1].", q, sources, quotes))
    assert not bad.grounded and bad.score == 0.0
    assert bad.unsupported == ["30"]
    good = run(G.check("A full-time employee gets 25 working days [1].", q, sources, quotes))
    assert good.grounded and good.score == 1.0 and good.unsupported == []


def test_invented_names_and_reversed_polarity_are_unsupported() -> None:
    sources, quotes = quotes_for("Can I use SMS codes for multi-factor authentication?", LEAVE)
    yes = run(G.check("Yes, you can use SMS codes.", "Can I use SMS codes?", sources, quotes))
    assert not yes.grounded
    named = run(G.check("Use Ubuntu for SMS codes.", "Can I use SMS codes?", sources, quotes))
    assert not named.grounded and "Ubuntu" in named.unsupported[0]


def test_a_table_right_after_a_sentence_splits_into_rows() -> None:
    text = (
        "Severity is set by the incident commander. | severity | postmortem | | --- | --- | "
        "| SEV1 | within **5 business days** | | SEV2 | within **10 business days** |"
    )
    assert "| SEV2 | within **10 business days** |" in G.units(text)


def test_a_name_from_elsewhere_in_the_sources_is_not_backed_by_the_quote() -> None:
    q = "In which Jira project are action items filed?"
    text = "Templates are in Confluence space **SRE**. Action items are filed in the **REL** Jira project."
    sources, quotes = quotes_for(q, text)
    assert [x.text for x in quotes] == ["Action items are filed in the **REL** Jira project."]
    wrong = run(G.check("Action items are filed in the SRE Jira project.", q, sources, quotes))
    assert not wrong.grounded and wrong.unsupported == ["SRE"]
    right = run(G.check("Action items are filed in the REL Jira project [1].", q, sources, quotes))
    assert right.grounded


def test_an_answer_without_the_asked_figure_does_not_answer() -> None:
    q = "How many days of paid annual leave does a full-time employee get?"
    sources, quotes = quotes_for(q, LEAVE)
    vague = run(G.check("Full-time employees receive paid annual leave.", q, sources, quotes))
    assert not vague.grounded and vague.unsupported == ["(states no figure)"]


def test_a_looping_answer_is_said_once() -> None:
    q = "How many days of paid annual leave does a full-time employee get?"
    sources, quotes = quotes_for(q, LEAVE)
    loop = "Full-time employees receive 25 working days of paid annual leave. " * 4
    g = run(G.check(loop, q, sources, quotes))
    assert g.grounded and len(g.sentences) == 1
    assert G.compose(loop, g, quotes).count("25 working days") == 1


def test_enforce_returns_quotes_and_report_the_answer() -> None:
    q = "How many days of paid annual leave does a full-time employee get?"
    sources, quotes = quotes_for(q, LEAVE)
    wrong = "You get 10 days."
    enforced = run(G.check(wrong, q, sources, quotes, mode="enforce"))
    text = G.compose(wrong, enforced, quotes)
    assert enforced.replaced and text.startswith(G.UNVERIFIED_LINE) and "10 days" not in text
    assert '[1] "- Full-time employees receive **25 working days**' in text
    reported = run(G.check(wrong, q, sources, quotes, mode="report"))
    assert G.compose(wrong, reported, quotes) == wrong and not reported.replaced


def test_the_embedder_is_asked_only_when_words_do_not_decide() -> None:
    q = "How many days of paid annual leave does a full-time employee get?"
    sources, quotes = quotes_for(q, LEAVE)
    calls: list[list[str]] = []

    async def embed(texts: list[str]) -> Any:
        import numpy as np

        calls.append(texts)
        return np.ones((len(texts), 4)) / 2.0  # every pair at cosine 1

    run(G.check("Employees receive 25 working days [1].", q, sources, quotes, embed=embed))
    assert calls == []
    paraphrase = "The yearly holiday allowance for full-timers is 25 working days."
    g = run(G.check(paraphrase, q, sources, quotes, embed=embed))
    assert len(calls) == 1 and g.grounded


# -- through the gateway -------------------------------------------------------------------------


class ScriptedLLM:
    """Streams ``answer`` in a few pieces, whatever the prompt (the check is under test)."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.prompts: list[str] = []

    async def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop_words: Sequence[str] = (),
        temperature: float = 0,
    ) -> AsyncIterator[str]:
        self.prompts.append(prompt)
        for i in range(0, len(self.answer), 7):
            yield self.answer[i : i + 7]

    async def ready(self) -> tuple[bool, str]:
        return True, ""

    async def aclose(self) -> None:
        return None


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    from llmctl.retrieval.embedders import InProcessEmbedder

    embedder = InProcessEmbedder(threads=1)
    index_dir, _ = build_index(tmp_path_factory.mktemp("grounding-index"), CORPUS, embedder)
    return index_dir, embedder


def serve(tmp_path: Path, index: tuple[Path, Any], answer: str, mode: str) -> ServerThread:
    index_dir, embedder = index
    config = make_config(tmp_path, grounding=mode)
    app = create_app(
        config, retriever=in_process_retriever(index_dir, embedder), llm=ScriptedLLM(answer)
    )
    return ServerThread(app)


QUESTION = "How many weeks of paid parental leave do employees get?"


def ask(
    server: ServerThread, state: Path, groups: list[str], stream: bool = False
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/ask",
        json={"question": QUESTION, "stream": stream},
        headers={"Authorization": f"Bearer {token(state, 'u', groups)}"},
        timeout=60,
    )


def test_enforce_withholds_an_invented_figure(tmp_path: Path, index: tuple[Path, Any]) -> None:
    with serve(
        tmp_path, index, "Employees get 30 weeks of paid parental leave [1].", "enforce"
    ) as s:
        r = ask(s, tmp_path, ["hr"])
        metrics = httpx.get(f"{s.url}/metrics").text
    body = r.json()
    assert r.status_code == 200 and body["outcome"] == "answered"
    assert body["answer"].startswith(G.UNVERIFIED_LINE) and "30 weeks" not in body["answer"]
    assert body["grounding"]["replaced"] and body["grounding"]["unsupported"] == ["30"]
    cited = {c["chunk_id"] for c in body["citations"]}
    assert body["quotes"] and all(q["chunk_id"] in cited for q in body["quotes"])
    assert any("twenty weeks" in q["text"] for q in body["quotes"])
    (record,) = list(read_records(tmp_path / "audit" / "audit.jsonl"))
    assert record["grounding"]["outcome"] == "replaced" and record["grounding"]["unsupported"] == 1
    assert "30 weeks" not in str(record)  # the audit keeps figures and ids, not the answer
    assert 'llmctl_gateway_grounding_total{endpoint="ask",outcome="replaced"} 1.0' in metrics


def test_a_supported_answer_is_returned(tmp_path: Path, index: tuple[Path, Any]) -> None:
    answer = "Employees are entitled to twenty weeks of paid parental leave [1]."
    with serve(tmp_path, index, answer, "enforce") as s:
        body = ask(s, tmp_path, ["hr"]).json()
    assert body["answer"] == answer and body["grounding"]["grounded"]
    assert body["grounding"]["score"] == 1.0 and "grounding_ms" in body["timings"]


def test_report_returns_the_answer_with_its_figures(
    tmp_path: Path, index: tuple[Path, Any]
) -> None:
    answer = "Employees get 30 weeks of paid parental leave."
    with serve(tmp_path, index, answer, "report") as s:
        body = ask(s, tmp_path, ["hr"]).json()
    assert body["answer"] == answer
    assert body["grounding"] == {
        "mode": "report",
        "score": 0.0,
        "grounded": False,
        "unsupported": ["30"],
        "replaced": False,
    }


def test_enforced_stream_sends_only_the_checked_text(
    tmp_path: Path, index: tuple[Path, Any]
) -> None:
    """With enforce, the generated text is buffered and checked before the intent record and the
    first byte; the deltas carry exactly the answer the final event names."""
    import json

    with serve(
        tmp_path, index, "Employees get 30 weeks of paid parental leave [1].", "enforce"
    ) as s:
        r = ask(s, tmp_path, ["hr"], stream=True)
    events = [e for e in r.text.split("\n\n") if e.strip()]
    deltas = [json.loads(e.split("data: ", 1)[1])["delta"] for e in events if "event: delta" in e]
    final = json.loads(next(e for e in events if "event: final" in e).split("data: ", 1)[1])
    assert "".join(deltas) == final["answer"] and "30 weeks" not in r.text
    stages = [x.get("stage") for x in read_records(tmp_path / "audit" / "audit.jsonl")]
    assert stages == ["intent", None]


def test_quotes_never_come_from_an_unreadable_chunk(
    tmp_path: Path, index: tuple[Path, Any]
) -> None:
    """A caller without ``hr`` gets no quote of the parental-leave policy, whatever is asked."""
    with serve(tmp_path, index, "Employees get twenty weeks of paid leave.", "enforce") as s:
        body = ask(s, tmp_path, ["finance", "staff"]).json()
    assert all(not q["doc_id"].startswith("hr/") for q in body.get("quotes", []))
    assert "twenty weeks" not in " ".join(q["text"] for q in body.get("quotes", []))
