"""Blueprints: load with positions, validate against the schema, apply semantic rules, type.

``check_file`` reports every problem at once (what ``llmctl check`` shows); ``load_blueprint``
is what every other verb calls, and refuses a blueprint that has any error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from llmctl.blueprint.model import Blueprint
from llmctl.blueprint.problems import Problem, format_problems
from llmctl.errors import BlueprintError

__all__ = [
    "Blueprint",
    "BlueprintInvalid",
    "CheckResult",
    "Problem",
    "check_file",
    "format_problems",
    "load_blueprint",
]


class BlueprintInvalid(BlueprintError):
    """The blueprint has errors; ``problems`` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        errors = [p for p in problems if p.severity == "error"]
        first = errors[0].text() if errors else "invalid blueprint"
        more = f" (and {len(errors) - 1} more; run llmctl check)" if len(errors) > 1 else ""
        super().__init__(first + more)
        self.problems = problems


@dataclass
class CheckResult:
    file: str
    problems: list[Problem] = field(default_factory=list)
    blueprint: Blueprint | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def ok(self, strict: bool = False) -> bool:
        return not self.errors and not (strict and self.warnings)


def check_file(path: str | os.PathLike[str]) -> CheckResult:
    """Every problem in one blueprint file; never raises for anything wrong with the file itself."""
    from llmctl.blueprint.rules import run_rules
    from llmctl.blueprint.schema import apply_defaults, schema_problems
    from llmctl.blueprint.yamlpos import YamlProblem, load_located, read_text

    shown = str(path)
    result = CheckResult(file=shown)
    try:
        text = read_text(path)
        located = load_located(text, shown)
    except YamlProblem as exc:
        result.problems.append(Problem(shown, exc.line, exc.col, "LLM-YAML-001", exc.detail))
        return result
    except BlueprintError as exc:
        message = str(exc).removeprefix(f"{shown}: ")
        result.problems.append(Problem(shown, 1, 1, "LLM-FILE-001", message))
        return result
    header = _header_problems(located)
    if header:
        result.problems.extend(header)
        return result
    result.problems.extend(schema_problems(located))
    if result.errors:
        return result
    from llmctl.blueprint.model import build_blueprint

    doc = apply_defaults(located.data)
    blueprint = build_blueprint(doc, Path(path).resolve())
    result.problems.extend(run_rules(blueprint, located))
    result.blueprint = blueprint
    return result


def _header_problems(located: object) -> list[Problem]:
    """apiVersion and kind first: a file that is not a blueprint gets one clear line, not fifty."""
    from llmctl.blueprint.yamlpos import Located

    assert isinstance(located, Located)
    data, file = located.data, located.file
    out = []
    for key, want in (("apiVersion", "llmctl.dev/v1"), ("kind", "Blueprint")):
        if key not in data:
            pos = located.pos(())
            out.append(
                Problem(
                    file,
                    pos.line,
                    pos.col,
                    "LLM-SCHEMA-002",
                    f"missing '{key}: {want}'; is this an llmctl blueprint?",
                    json_path="$",
                )
            )
        elif data[key] != want:
            pos = located.pos((key,))
            out.append(
                Problem(
                    file,
                    pos.line,
                    pos.col,
                    "LLM-SCHEMA-004",
                    f"{key} is {data[key]!r}; this llmctl reads {key}: {want}",
                    json_path=f"$.{key}",
                )
            )
    return out


def load_blueprint(path: str | os.PathLike[str]) -> Blueprint:
    """A valid blueprint, or BlueprintInvalid naming its first error. Warnings do not stop it."""
    result = check_file(path)
    if result.errors or result.blueprint is None:
        raise BlueprintInvalid(result.problems)
    return result.blueprint
