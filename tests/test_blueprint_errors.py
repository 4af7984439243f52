"""Bad input gets one clear line with a position, never a traceback, and nothing is lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmctl.blueprint import BlueprintInvalid, check_file, load_blueprint

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = (ROOT / "blueprints" / "minimal.yaml").read_text()


def write(tmp_path: Path, text: str | bytes, name: str = "bp.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def only(result) -> str:  # the one problem's text
    assert len(result.problems) == 1, [p.text() for p in result.problems]
    return result.problems[0].text()


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in only(check_file(tmp_path / "nope.yaml"))


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in only(check_file(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL)
    p.chmod(0)
    assert "permission denied" in only(check_file(p))


def test_empty_and_blank(tmp_path: Path) -> None:
    assert "empty" in only(check_file(write(tmp_path, "")))
    assert "empty" in only(check_file(write(tmp_path, "  \n\n")))
    assert "no YAML content" in only(check_file(write(tmp_path, "# only a comment\n")))


def test_binary_and_non_utf8(tmp_path: Path) -> None:
    assert "binary" in only(check_file(write(tmp_path, b"\x7fELF\x00\x01")))
    assert "UTF-8" in only(check_file(write(tmp_path, "name: caf\xe9\n".encode("latin-1"))))


def test_invalid_yaml_has_line_and_column(tmp_path: Path) -> None:
    result = check_file(write(tmp_path, "apiVersion: llmctl.dev/v1\nkind: [Blueprint\n"))
    (p,) = result.problems
    assert p.rule_id == "LLM-YAML-001" and p.line >= 2 and p.col >= 1


def test_root_must_be_a_mapping(tmp_path: Path) -> None:
    assert "mapping" in only(check_file(write(tmp_path, "- a\n- b\n")))
    assert "mapping" in only(check_file(write(tmp_path, "just a string\n")))


def test_several_documents(tmp_path: Path) -> None:
    text = only(check_file(write(tmp_path, MINIMAL + "\n---\nkind: Blueprint\n")))
    assert "several YAML documents" in text


def test_size_limit(tmp_path: Path) -> None:
    big = MINIMAL + "#" + "x" * (1024 * 1024) + "\n"
    assert "byte limit" in only(check_file(write(tmp_path, big)))


def test_absurd_nesting(tmp_path: Path) -> None:
    deep = "a: " + "[" * 200 + "]" * 200 + "\n"
    assert "nested deeper" in only(check_file(write(tmp_path, deep)))


def test_alias_bomb_is_bounded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join(['*a' + str(i - 1)] * 10)}]")
    text = only(check_file(write(tmp_path, "\n".join(lines) + "\n")))
    assert "LLM-YAML-001" in text


def test_wrong_api_version_and_kind(tmp_path: Path) -> None:
    r = check_file(
        write(
            tmp_path,
            MINIMAL.replace("llmctl.dev/v1", "llmctl.dev/v2").replace(
                "kind: Blueprint", "kind: Deployment"
            ),
        )
    )
    texts = [p.text() for p in r.problems]
    assert len(texts) == 2
    assert any("apiVersion is 'llmctl.dev/v2'" in t for t in texts)
    assert any("kind is 'Deployment'" in t for t in texts)
    r = check_file(write(tmp_path, "foo: bar\n"))
    assert any("is this an llmctl blueprint" in p.message for p in r.problems)


def test_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    text = only(
        check_file(write(tmp_path, MINIMAL.replace("metadata:\n", "metadata:\n  name: other\n")))
    )
    assert "duplicate key 'name'" in text and ":8:3:" in text and "first at line 7" in text


def test_typo_suggests_the_closest_key(tmp_path: Path) -> None:
    src = MINIMAL + "capacity:\n  repliacs: {min: 1, max: 2}\n"
    p = only(check_file(write(tmp_path, src)))
    assert "unknown key 'repliacs'" in p and "did you mean 'replicas'" in p
    assert f":{len(MINIMAL.splitlines()) + 2}:3:" in p  # the key itself


def test_all_schema_errors_reported_at_once_with_positions(tmp_path: Path) -> None:
    src = (
        MINIMAL.replace("maxInputTokens: 1536", "maxInputTokens: lots").replace(
            "name: minimal", "name: Not_A_Label"
        )
        + "engine:\n  quantization: fp9\n"
    )
    r = check_file(write(tmp_path, src))
    rules = sorted(p.rule_id for p in r.problems)
    assert rules == ["LLM-SCHEMA-003", "LLM-SCHEMA-004", "LLM-SCHEMA-004"]
    by_path = {p.json_path: p for p in r.problems}
    line = next(i for i, t in enumerate(src.splitlines(), 1) if "maxInputTokens" in t)
    assert by_path["$.model.maxInputTokens"].line == line
    assert "did you mean 'fp8'" in by_path["$.engine.quantization"].message
    assert all(p.line > 1 for p in r.problems)


def test_yaml_booleans_in_enums_get_a_hint(tmp_path: Path) -> None:
    p = only(check_file(write(tmp_path, MINIMAL.replace("citations: none", "citations: off"))))
    assert "yes/no/on/off" in p


def test_load_blueprint_raises_one_line(tmp_path: Path) -> None:
    with pytest.raises(BlueprintInvalid) as info:
        load_blueprint(
            write(tmp_path, MINIMAL.replace("maxInputTokens: 1536", "maxInputTokens: x"))
        )
    assert "\n" not in str(info.value) and "LLM-SCHEMA-003" in str(info.value)


def test_check_leaves_the_file_untouched(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL)
    before = p.read_bytes()
    check_file(p)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bp.yaml"]
