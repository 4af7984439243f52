"""Property-based: whatever is done to a valid blueprint, check never raises and every problem
it reports carries a real line and column inside the file."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmctl.blueprint import check_file

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [
    yaml.safe_load((ROOT / "blueprints" / name).read_text())
    for name in ("hr-policy-assistant.yaml", "support-chatbot.yaml", "minimal.yaml")
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["auto", "off", "yes", "0.0.0.0/0", "fp8", "local", "kubernetes", "", "~"]),
)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, prefix + (i,)))
    return out


def _get(doc: object, path: tuple) -> object:
    for part in path:
        doc = doc[part]  # type: ignore[index]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> str:
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _get(doc, path[:-1]), path[-1]
        op = draw(st.sampled_from(["drop", "retype", "rename", "duplicate", "scalar"]))
        if op == "drop":
            del parent[last]  # type: ignore[union-attr, index]
        elif op in ("retype", "scalar"):
            parent[last] = (
                draw(scalars)
                if op == "scalar"
                else draw(  # type: ignore[index]
                    st.sampled_from([[], {}, "text", 7, 1.5, None, [1, 2], {"a": 1}])
                )
            )
        elif op == "rename" and isinstance(parent, dict):
            value = parent.pop(last)
            parent[str(last) + draw(st.sampled_from(["s", "_", "X", ""])) + "x"] = value
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if draw(st.booleans()):  # a duplicated key, written as text (a dict cannot hold one)
        lines = text.splitlines()
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
        text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 4)) == 0:  # truncation
        text = text[: draw(st.integers(0, len(text)))]
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mutated())
def test_check_never_raises_and_always_locates(tmp_path_factory, text: str) -> None:
    folder = tmp_path_factory.mktemp("bp")
    (folder / "corpora" / "hr-policy").mkdir(parents=True)
    (folder / "corpora" / "support-kb").mkdir(parents=True)
    path = folder / "bp.yaml"
    path.write_text(text, encoding="utf-8")
    result = check_file(path)
    n_lines = max(1, len(text.splitlines()))
    for p in result.problems:
        assert p.file == str(path)
        assert 1 <= p.line <= n_lines + 1, p.text()
        assert p.col >= 1, p.text()
        assert p.rule_id.startswith("LLM-") and p.message
