"""Every semantic rule has a passing and a failing fixture, and they behave."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmctl.blueprint import check_file
from llmctl.blueprint.rules import RULES

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
RULE_IDS = [r.id for r in RULES]


def test_rule_ids_are_unique_and_well_formed() -> None:
    assert len(RULE_IDS) == len(set(RULE_IDS))
    for rule in RULES:
        assert rule.id.startswith("LLM-") and rule.id.count("-") == 2
        assert rule.summary


def test_every_rule_has_fixtures_and_no_orphans() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(RULE_IDS)


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_passing_fixture(rule_id: str) -> None:
    result = check_file(FIXTURES / rule_id / "pass.yaml")
    assert result.blueprint is not None, [p.text() for p in result.problems]
    assert [p.text() for p in result.problems if p.rule_id == rule_id] == []
    assert result.errors == [], [p.text() for p in result.errors]


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_failing_fixture(rule_id: str) -> None:
    result = check_file(FIXTURES / rule_id / "fail.yaml")
    mine = [p for p in result.problems if p.rule_id == rule_id]
    assert mine, f"{rule_id} did not fire: {[p.text() for p in result.problems]}"
    for p in mine:
        assert p.line > 1 and p.col >= 1
        assert p.message


def test_rule_docstrings_have_examples() -> None:
    import importlib

    from llmctl.blueprint import rules as pkg

    for module in pkg._MODULES:
        doc = importlib.import_module(module.__name__).__doc__ or ""
        assert "Passing" in doc and "Failing" in doc, module.__name__


def test_anonymous_access_is_a_warning_that_strict_fails(tmp_path: Path) -> None:
    src = (FIXTURES / "LLM-NET-002" / "pass.yaml").read_text()
    src = src.replace("mode: oidc", "mode: none\n    allowAnonymous: true")
    p = tmp_path / "anon.yaml"
    p.write_text(src)
    (tmp_path / "docs").mkdir()
    result = check_file(p)
    assert [w.rule_id for w in result.warnings] == ["LLM-NET-002"]
    assert result.ok() and not result.ok(strict=True)
