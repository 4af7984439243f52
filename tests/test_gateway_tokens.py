"""Prompt sizing in the served model's tokens (``llmctl.gateway.tokens``, ``build_prompt``).

The counters are tested against the real tokenizers: the local stack's GGUF (SmolLM2-135M,
found as ``llmctl.local.spec.default_gguf`` finds it) through llama.cpp, and the MiniLM
``tokenizer.json`` shipped for embeddings through ``tokenizers``. ``build_prompt`` is tested with
the GGUF counter on the case that motivated it: 1,950 emoji fit the 2,000-character question
limit, but are 5,850 tokens against a 1,536-token input budget, so the old three-characters-a-
token estimate (650) let the prompt overflow the model's 2,048-token context.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llmctl.gateway.config import AuthConfig, GatewayConfig, load_config, write_config
from llmctl.gateway.prompt import CHATML_FRAME, PLAIN_FRAME, build_prompt
from llmctl.gateway.protocol import Refusal
from llmctl.gateway.tokens import (
    CachedCounter,
    FallbackCounter,
    HFTokenizerCounter,
    LlamaCppCounter,
    TokenizerError,
    load_token_counter,
)
from llmctl.local.spec import default_embedding_model, default_gguf

BUDGET = 1536  # the local blueprint's max_input_tokens (2,048 context less the output)

TEXTS = {
    "english": "Employees are entitled to twenty weeks of paid parental leave after a birth.",
    "emoji": "\U0001f600\U0001f44d\U0001f3fd\u2764\ufe0f" * 40,
    "japanese": "従業員は出産後に二十週間の有給育児休暇を取得できます。" * 10,
    "russian": "Сотрудники имеют право на двадцать недель оплачиваемого отпуска. " * 5,
    "arabic": "يحق للموظفين الحصول على عشرين أسبوعا من إجازة الوالدين المدفوعة. " * 5,
    "mixed": "Leave: 20 週間 (≈ 140 días) — see §4.2 «Parental» ✅. " * 8,
}


@pytest.fixture(scope="module")
def gguf() -> LlamaCppCounter:
    return LlamaCppCounter(default_gguf())


# -- counters -----------------------------------------------------------------------------------


def test_fallback_counts_ascii_by_chars_and_other_text_by_utf8_bytes() -> None:
    by3 = FallbackCounter(3)
    assert by3.count("") == 0 and by3.count("abcd") == 2 and by3.count("abc") == 1
    assert by3.count("\U0001f600") == 4 and by3.count("週") == 3 and by3.count("é") == 2
    assert by3.count("ab週") == 1 + 3  # ceil(2 / 3) + 3 bytes
    assert by3.count("\ud800") == 3  # never raises, even on what UTF-8 cannot encode
    assert by3.count("\U0001f600" * 1950) == 7800
    with pytest.raises(TokenizerError):
        FallbackCounter(0)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_fallback_is_an_upper_bound_of_the_served_tokenizer(
    gguf: LlamaCppCounter, name: str
) -> None:
    """The bound the gateway relies on when it has no tokenizer, checked against a byte-level
    BPE vocabulary; the old character estimate is shown to undercount non-Latin text."""
    text = TEXTS[name]
    real = gguf.count(text)
    assert real <= FallbackCounter(3).count(text)
    if not text.isascii() and name != "mixed":
        assert math.ceil(len(text) / 3) < real  # what chars_per_token alone would have said


def test_llama_cpp_counter_counts_like_the_server(gguf: LlamaCppCounter) -> None:
    assert gguf.count("") == 0
    assert gguf.count("<|im_start|>") == 1  # a special token of the chat template, as served
    assert gguf.count("\U0001f600" * 1950) == 5850
    assert gguf.count("hi \ud800") == gguf.count("hi \ufffd")  # a lone surrogate cannot crash it
    assert "SmolLM2" in repr(gguf)


def test_hf_counter_does_not_truncate_and_adds_no_special_tokens() -> None:
    folder = default_embedding_model()
    counter = load_token_counter(folder).inner  # a folder holding tokenizer.json (cached)
    assert isinstance(counter, HFTokenizerCounter)
    assert counter.count("") == 0  # no [CLS]/[SEP]
    long = "parental leave " * 400
    assert counter.count(long) == 800  # the file truncates at 128; counting must not
    assert load_token_counter(folder / "tokenizer.json").count(long) == 800
    assert counter.count("a \ud800") == counter.count("a \ufffd")


def test_load_token_counter_picks_by_path_and_fails_in_one_line(tmp_path: Path) -> None:
    fallback = load_token_counter(None, chars_per_token=4)
    assert isinstance(fallback, FallbackCounter) and fallback.chars_per_token == 4
    loaded = load_token_counter(default_gguf())
    assert isinstance(loaded, CachedCounter) and isinstance(loaded.inner, LlamaCppCounter)
    assert loaded.count("parental leave") == loaded.inner.count("parental leave")
    assert loaded.count("parental leave") == loaded.inner.count("parental leave")  # from cache
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"not a gguf file\n")
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    (tmp_path / "empty").mkdir()
    (tmp_path / "vocab.txt").write_text("a\n")
    cases = {
        tmp_path / "missing.gguf": "not found",
        not_gguf: "cannot read",
        tmp_path / "nowhere" / "tokenizer.json": "not found",
        broken: "cannot read",
        tmp_path / "empty": "holds no tokenizer.json",
        tmp_path / "vocab.txt": "neither a .gguf file",
    }
    for path, reason in cases.items():
        with pytest.raises(TokenizerError) as info:
            load_token_counter(path)
        message = str(info.value)
        assert message.startswith("tokenizer: ") and reason in message and "\n" not in message


def test_config_tokenizer_is_resolved_relative_to_the_file(tmp_path: Path) -> None:
    auth = AuthConfig(mode="none")
    path = write_config(
        GatewayConfig(tokenizer="../models/tokenizer.json", auth=auth), tmp_path / "gw" / "c.json"
    )
    assert load_config(path).tokenizer == str(tmp_path / "models" / "tokenizer.json")
    assert (
        load_config(write_config(GatewayConfig(auth=auth), tmp_path / "plain.json")).tokenizer
        is None
    )


def test_the_local_stack_sizes_prompts_with_its_gguf(tmp_path: Path, repo_root: Path) -> None:
    from llmctl.blueprint import load_blueprint
    from llmctl.gateway.component import gateway_component
    from llmctl.state import StackState

    bp = load_blueprint(repo_root / "blueprints" / "hr-policy-assistant.yaml")
    state = tmp_path / "hr" / "local"
    args = {"triton_url": "http://127.0.0.1:1", "triton_grpc_url": "127.0.0.1:2", "port": 9}
    gateway_component(state, bp, index_dir=None, **args)
    assert load_config(StackState.at(state).gateway_config).tokenizer == str(default_gguf())


# -- build_prompt in real tokens ----------------------------------------------------------------


def _hit(i: int, text: str, score: float = 0.9) -> dict:
    return {
        "doc_id": f"d{i}",
        "chunk_id": f"d{i}#0",
        "title": f"Policy {i}",
        "heading": "Entitlement",
        "path": f"p{i}.md",
        "text": text,
        "score": score,
        "chunk_hash": f"h{i}",
    }


def test_the_1950_emoji_question_is_refused_not_overflowed(gguf: LlamaCppCounter) -> None:
    question = "\U0001f600" * 1950  # within max_question_chars (2,000)
    with pytest.raises(Refusal) as info:
        build_prompt(
            question,
            [_hit(1, TEXTS["english"])],
            max_input_tokens=BUDGET,
            max_source_chars=700,
            tokens=gguf,
            frame=CHATML_FRAME,
        )
    refusal = info.value
    assert (refusal.status, refusal.outcome) == (400, "bad_request")
    assert refusal.message.startswith("question is 5850 tokens; ")
    assert refusal.message.endswith("over the model's input limit of 1536 tokens")


@pytest.mark.parametrize("emoji", [0, 50, 300, 480, 495, 505, 520, 600, 1950])
@pytest.mark.parametrize("source", ["english", "japanese", "emoji"])
def test_real_token_count_stays_within_budget_or_is_refused(
    gguf: LlamaCppCounter, emoji: int, source: str
) -> None:
    """For questions around and over the budget: the built prompt's real count is within it
    (and is what ``prompt_tokens`` says), or the request is a 400 before any model call."""
    question = "How long is leave? " + "\U0001f600" * emoji
    hits = [_hit(i, TEXTS[source] * 3) for i in range(1, 6)]
    try:
        plan = build_prompt(
            question,
            hits,
            max_input_tokens=BUDGET,
            max_source_chars=700,
            tokens=gguf,
            frame=CHATML_FRAME,
        )
    except Refusal as refusal:
        assert refusal.status == 400 and gguf.count(question) > BUDGET - 100
        return
    assert plan.prompt_tokens == gguf.count(plan.text) <= BUDGET
    assert [s.number for s in plan.sources] == list(range(1, len(plan.sources) + 1))
    for source_ in plan.sources:  # what is cited is what the model was shown
        assert (
            f"[{source_.number}] Policy {source_.number} — Entitlement: {source_.text}" in plan.text
        )


def test_sources_fill_the_budget_in_tokens_and_the_first_is_cut_to_fit(
    gguf: LlamaCppCounter,
) -> None:
    hits = [_hit(i, TEXTS["japanese"] * 3) for i in range(1, 6)]  # ~1.9 tokens a character
    plan = build_prompt(
        "休暇は？", hits, max_input_tokens=BUDGET, max_source_chars=300, tokens=gguf
    )
    assert [len(s.text) for s in plan.sources] == [
        300,
        300,
    ] and plan.prompt_tokens <= BUDGET  # the third would not fit
    assert BUDGET - plan.prompt_tokens < gguf.count(plan.sources[1].text)

    # A long question leaves room for part of the best source only: it is cut, not dropped,
    # and cut as little as the budget allows (a few characters more would not fit).
    question = "\U0001f600" * 380  # 1,140 tokens
    plan = build_prompt(question, hits, max_input_tokens=BUDGET, max_source_chars=700, tokens=gguf)
    (first,) = plan.sources
    assert first.text.endswith("…") and 80 <= len(first.text) < 700
    assert plan.prompt_tokens == gguf.count(plan.text) <= BUDGET
    assert BUDGET - plan.prompt_tokens < 20

    # No room for even 80 characters of it: no source, which the pipeline answers itself.
    question = "\U0001f600" * 475
    plan = build_prompt(question, hits, max_input_tokens=BUDGET, max_source_chars=700, tokens=gguf)
    assert plan.sources == () and plan.prompt_tokens <= BUDGET


class JoinCostsMore:
    """A tokenizer whose whole prompt costs more than its parts counted one by one (tokenizers
    may merge across a boundary differently): a character a token, plus 30 once the first
    source follows the ``Sources:`` header, which no part shows alone. ``build_prompt`` must go
    by the whole prompt."""

    def count(self, text: str) -> int:
        return len(text) + (30 if "Sources:\n[1]" in text else 0)


def test_the_whole_prompt_decides_when_parts_undercount() -> None:
    counter = JoinCostsMore()
    hits = [_hit(1, "a" * 300), _hit(2, "b" * 300)]
    bare = build_prompt("q", [], max_input_tokens=10**6, max_source_chars=700, tokens=counter)
    block = len("[1] Policy 1 — Entitlement: ") + 300  # each block, counted alone

    budget = bare.prompt_tokens + 2 * block + 1 + 10  # both fit by their parts, not joined
    plan = build_prompt("q", hits, max_input_tokens=budget, max_source_chars=700, tokens=counter)
    assert [s.doc_id for s in plan.sources] == ["d1"] and plan.prompt_tokens <= budget
    assert plan.sources[0].text == "a" * 300  # dropping the second was enough

    budget = bare.prompt_tokens + block + 10  # source 1 fits by its parts, not joined
    plan = build_prompt("q", hits, max_input_tokens=budget, max_source_chars=700, tokens=counter)
    (first,) = plan.sources
    assert first.text.endswith("…") and len(first.text) < 300
    assert plan.prompt_tokens == counter.count(plan.text) <= budget
    assert f"[1] Policy 1 — Entitlement: {first.text}" in plan.text


def test_plain_frame_and_fallback_counter_agree_with_the_budget() -> None:
    by3 = FallbackCounter(3)
    hits = [_hit(i, TEXTS["arabic"]) for i in range(1, 4)]
    plan = build_prompt(
        "كم أسبوعا؟",
        hits,
        max_input_tokens=600,
        max_source_chars=300,
        tokens=by3,
        frame=PLAIN_FRAME,
    )
    assert plan.sources and plan.prompt_tokens == by3.count(plan.text) <= 600
