"""Every example blueprint passes check; the schema is well formed and self-describing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from llmctl.blueprint import check_file, load_blueprint
from llmctl.blueprint.schema import load_schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "blueprints").glob("*.yaml"))


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"hr-policy-assistant.yaml", "support-chatbot.yaml", "minimal.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_blueprint_passes_check_strictly(path: Path) -> None:
    result = check_file(path)
    assert [p.text() for p in result.problems] == []


def test_packaged_schema_is_the_repository_schema() -> None:
    on_disk = json.loads((ROOT / "schemas" / "blueprint.schema.json").read_text())
    assert load_schema() == on_disk


def test_schema_is_valid_2020_12() -> None:
    Draft202012Validator.check_schema(load_schema())


def _properties(schema: object, path: str = "$"):
    if isinstance(schema, dict):
        for key, sub in (schema.get("properties") or {}).items():
            yield f"{path}.{key}", sub
        for key, sub in schema.items():
            if isinstance(sub, dict | list):
                yield from _properties(sub, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            yield from _properties(sub, f"{path}[{i}]")


def test_every_property_is_described_and_objects_are_closed() -> None:
    schema = load_schema()
    for where, sub in _properties(schema):
        assert "description" in sub or "$ref" in sub, f"{where} has no description"

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{where} is not closed"
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(schema, "$")


def test_typed_model_has_defaults_and_is_immutable() -> None:
    bp = load_blueprint(ROOT / "blueprints" / "minimal.yaml")
    assert bp.name == "minimal"
    assert bp.requirements.data_residency == "private"  # secure by default
    assert bp.network.egress == "deny"
    assert bp.network.auth.mode == "oidc"
    assert bp.retrieval.enabled is False
    assert bp.target().is_local
    with pytest.raises(AttributeError):
        bp.model.id = "other"  # type: ignore[misc]


def test_hr_blueprint_resolves_targets_and_gates() -> None:
    bp = load_blueprint(ROOT / "blueprints" / "hr-policy-assistant.yaml")
    assert set(bp.targets) == {"local", "prod"}
    assert bp.target("prod").namespace == "hr-policy-assistant"
    assert bp.gates.load.p95_latency_ms == 10000
    local = bp.gates_for("local")
    assert local.load.users == 4 and local.load.p95_latency_ms == 30000
    assert local.quality.min_recall_at_k == bp.gates.quality.min_recall_at_k
    assert bp.retrieval.sources[0].sensitive
    assert len(bp.hash) == 64


def test_hash_ignores_comments_and_key_order(tmp_path: Path) -> None:
    src = (ROOT / "blueprints" / "minimal.yaml").read_text()
    a = tmp_path / "a.yaml"
    a.write_text(src)
    b = tmp_path / "b.yaml"
    b.write_text(
        "# another comment\n"
        + src.replace(
            "  maxInputTokens: 1536\n  maxOutputTokens: 256\n",
            "  maxOutputTokens: 256\n  maxInputTokens: 1536\n",
        )
    )
    assert load_blueprint(a).hash == load_blueprint(b).hash
    c = tmp_path / "c.yaml"
    c.write_text(src.replace("maxOutputTokens: 256", "maxOutputTokens: 300"))
    assert load_blueprint(c).hash != load_blueprint(a).hash
