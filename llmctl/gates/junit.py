"""JUnit XML for CI: one testsuite per gate, one testcase per check (per requirement for compliance).

CI systems (GitHub Actions reporters, GitLab, Jenkins) render JUnit natively, so a failed gate
shows up as a named failed test with its message rather than a line buried in a log.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from llmctl.gates.results import ERROR, FAILED, SKIPPED, GateResult, VerifyResult


def _suite(gate: GateResult, prefix: str) -> ET.Element:
    suite = ET.Element("testsuite", name=f"{prefix}.{gate.name}")
    cases = gate.checks or []
    failures = errors = skipped = 0
    if not cases:  # a gate that did not run (or had nothing to check) is still one visible case
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{prefix}.{gate.name}",
            name=gate.name,
            time=f"{gate.seconds:.3f}",
        )
        if gate.status == ERROR:
            ET.SubElement(case, "error", message=gate.message, type="GateError").text = gate.message
            errors += 1
        elif gate.status == FAILED:
            ET.SubElement(
                case, "failure", message=gate.message, type="GateFailed"
            ).text = gate.message
            failures += 1
        elif gate.status == SKIPPED:
            ET.SubElement(case, "skipped", message=gate.message)
            skipped += 1
        total = 1
    else:
        for check in cases:
            case = ET.SubElement(
                suite, "testcase", classname=f"{prefix}.{gate.name}", name=check.name, time="0"
            )
            if check.passed is False:
                text = check.message + (f"\nevidence: {check.evidence}" if check.evidence else "")
                ET.SubElement(case, "failure", message=check.message, type="GateFailed").text = text
                failures += 1
            elif check.passed is None:
                ET.SubElement(case, "skipped", message=check.message)
                skipped += 1
            else:
                ET.SubElement(case, "system-out").text = check.message
        total = len(cases)
    suite.set("tests", str(total))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{gate.seconds:.3f}")
    return suite


def to_junit(result: VerifyResult) -> ET.Element:
    prefix = f"llmctl.verify.{result.blueprint}.{result.target}"
    root = ET.Element("testsuites", name=prefix, time=f"{result.seconds:.3f}")
    suites = [_suite(g, prefix) for g in result.gates]
    for attr in ("tests", "failures", "errors", "skipped"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in suites)))
    root.extend(suites)
    return root


def write_junit(result: VerifyResult, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tree = ET.ElementTree(to_junit(result))
    ET.indent(tree)
    tree.write(p, encoding="utf-8", xml_declaration=True)
    return p
