"""``llmctl rollout`` on the local target: the new revision beside the current one, traffic shifted
step by step, promoted or rolled back by the evidence of each step.

1. The new revision is what ``llmctl up`` would apply now (``candidate``). When its model differs
   from the active revision's, its build is served as a second Triton model version beside the
   first (``llmctl.rollout.versions``); when only gateway settings differ (output budget, decoding,
   retrieval depth) both arms share the model and differ in their routing settings.
2. For each step the routing file gives the canary its weight (sticky per subject, see
   ``llmctl.gateway.routing``); after ``step_duration`` the gateway's per-revision metrics of the
   window are compared (error rate, TTFT p95) and a quality sample is asked of both arms as
   subjects the routing sends there (answer correctness, recall, grounding against the
   blueprint's ``maxRegression``).
3. A failed step rolls back at once: routing back to the stable arm only (every subject back on
   the revision it had), the canary's model version unloaded and deleted, the canary recorded
   ``rolled-back``. Passing every step promotes it: it becomes the only arm and ``active``, the
   previous revision ``retired`` (its model version stays until ``llmctl retire``).

The experiment mode runs two arms for a while and reports both (seed 001's A/B test on response
length); it promotes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmctl.errors import LlmctlError
from llmctl.gateway.routing import Arm, Routing, read_routing, write_routing
from llmctl.rollout import observe
from llmctl.rollout.revisions import History, Revision, revision_from_config
from llmctl.triton_protocol import LLM_MODEL

DEFAULT_STEPS = (5, 25, 50, 100)
QUALITY_METRICS = ("answer_correctness", "recall_at_k", "grounded_rate")
MIN_TTFT_SAMPLES = 5  # fewer first tokens in a step make no p95
SETTLE_S = 1.5  # the gateway re-reads the routing file within a second
Say = Callable[[str], None]


@dataclass(frozen=True)
class Criteria:
    """When a canary step fails. From the blueprint's SLOs and quality gate."""

    max_error_rate: float  # the SLO: the canary may never exceed it ...
    error_margin: float  # ... nor the stable arm's own rate by more than this
    ttft_budget_ms: float  # the SLO's TTFT p95 ...
    ttft_ratio: float  # ... and the stable arm's p95 times this: the canary may exceed neither
    max_regression: float  # quality below the stable arm's by more than this fails
    min_requests: int  # fewer canary requests in a step are not evidence

    @classmethod
    def from_blueprint(cls, bp: Any, min_requests: int = 20) -> Criteria:
        slo = bp.requirements.slo
        gates = bp.gates_for("local")
        return cls(
            max_error_rate=float(slo.error_rate),
            error_margin=0.02,
            ttft_budget_ms=float(slo.ttft_p95_ms),
            ttft_ratio=1.5,
            max_regression=float(gates.quality.max_regression),
            min_requests=min_requests,
        )


def judge(
    c: Criteria,
    stable: observe.ArmStats,
    canary: observe.ArmStats,
    quality: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """Why this step fails (empty: it passes)."""
    problems = []
    if canary.requests < c.min_requests:
        problems.append(
            f"only {canary.requests} canary requests in the step (need {c.min_requests}): "
            "not enough evidence"
        )
    limit = max(c.max_error_rate, stable.error_rate + c.error_margin)
    if canary.requests and canary.error_rate > limit:
        problems.append(
            f"canary error rate {canary.error_rate:.1%} over {limit:.1%} (stable "
            f"{stable.error_rate:.1%}, SLO {c.max_error_rate:.1%})"
        )
    if canary.ttft_p95_ms is not None and canary.ttft_count >= MIN_TTFT_SAMPLES:
        limit_ms = c.ttft_budget_ms
        if stable.ttft_p95_ms is not None:
            limit_ms = max(limit_ms, stable.ttft_p95_ms * c.ttft_ratio)
        if canary.ttft_p95_ms > limit_ms:
            problems.append(f"canary TTFT p95 {canary.ttft_p95_ms:.0f} ms over {limit_ms:.0f} ms")
    if quality:
        s, k = quality.get("stable") or {}, quality.get("canary") or {}
        if k.get("errors"):
            problems.append(f"{k['errors']} of the canary's quality sample failed")
        for name in QUALITY_METRICS:
            a, b = s.get(name), k.get(name)
            if a is not None and b is not None and b < a - c.max_regression:
                problems.append(f"canary {name} {b:.2f} below stable {a:.2f} - {c.max_regression}")
    return problems


@dataclass
class StepReport:
    weight: float
    stable: observe.ArmStats
    canary: observe.ArmStats
    observed_share: float | None  # percent of the window's requests the canary answered
    quality: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "observed_share": None
            if self.observed_share is None
            else round(self.observed_share, 2),
            "stable": self.stable.to_dict(),
            "canary": self.canary.to_dict(),
            "quality": {
                arm: {k: v for k, v in q.items() if k != "details"}
                for arm, q in self.quality.items()
            },
            "passed": self.passed,
            "problems": list(self.problems),
        }


@dataclass
class RolloutReport:
    blueprint: str
    target: str
    mode: str  # "canary" | "experiment"
    stable: str
    canary: str | None
    outcome: str  # "promoted" | "rolled-back" | "unchanged" | "experiment"
    reason: str = ""
    steps: list[StepReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "blueprint": self.blueprint,
            "target": self.target,
            "mode": self.mode,
            "stable": self.stable,
            "canary": self.canary,
            "outcome": self.outcome,
            "reason": self.reason,
            "steps": [s.to_dict() for s in self.steps],
        }

    def summary(self) -> list[str]:
        out = [f"{self.mode} {self.canary or '-'} beside {self.stable}: {self.outcome}"]
        if self.reason:
            out.append(f"  {self.reason}")
        for s in self.steps:
            share = "-" if s.observed_share is None else f"{s.observed_share:.1f}%"
            line = (
                f"  {s.weight:g}%: observed {share} of {s.stable.requests + s.canary.requests} "
                f"requests; errors stable {s.stable.error_rate:.1%} canary {s.canary.error_rate:.1%}"
            )
            out.append(line + ("" if s.passed else f"; FAILED: {'; '.join(s.problems)}"))
        return out


class LocalRollout:
    """The running local stack's revisions, routing and model versions, changed safely."""

    def __init__(self, bp: Any, target: str = "local", say: Say | None = None) -> None:
        from llmctl.gates.stack import Stack

        self.bp = bp
        self.target = target
        self.say = say or (lambda _m: None)
        self.stack = Stack(bp, target)
        self.state = self.stack.state
        self.history = History(self.state.revisions_file)
        grpc = self.stack.endpoints().get("triton_grpc_url", "")
        self.grpc_url = grpc

    # -- revisions ---------------------------------------------------------------------------------
    def stable(self) -> Revision:
        """The active revision; the running gateway's own when the history has none yet."""
        active = self.history.active()
        if active is not None:
            return active
        from llmctl.gateway.config import load_config

        config = load_config(self.state.gateway_config)
        rev = revision_from_config(config, self.bp.section_hash("retrieval"))
        if rev.id != config.revision:
            raise LlmctlError(
                f"the running gateway serves revision {config.revision or '(none)'}, not one this "
                f"blueprint describes; run `llmctl up {self.bp.path}` first"
            )
        return self.history.record(rev, "active", "running before the history began")

    def candidate(self) -> tuple[Revision, Any]:
        """The revision ``llmctl up`` would apply now, and its LLM build."""
        from llmctl.gateway.component import _chat_template
        from llmctl.gateway.config import config_from_blueprint
        from llmctl.targets.local import local_target

        t = local_target(self.bp, self.target)
        builds = {b.name: b for b in t.repository.build(t.spec, self.say)}
        build = builds[LLM_MODEL]
        config = config_from_blueprint(
            self.bp,
            chat_template=_chat_template(self.bp),
            state_dir=self.state.dir,
            triton_url="",
            triton_grpc_url="",
            index_dir=None,
            engine_hash=build.key,
            target=self.target,
        )
        return revision_from_config(config, self.bp.section_hash("retrieval")), build

    # -- routing -------------------------------------------------------------------------------------
    def route(self, stable: Revision, other: Revision | None, weight: float, mode: str) -> Routing:
        arms = [
            Arm(
                stable.id,
                "stable" if mode == "canary" else "a",
                100 - weight,
                stable.llm_version,
                dict(stable.settings),
            )
        ]
        if other is not None:
            arms.insert(
                0,
                Arm(
                    other.id,
                    "canary" if mode == "canary" else "b",
                    weight,
                    other.llm_version,
                    dict(other.settings),
                ),
            )
        routing = Routing(tuple(arms), mode=mode, salt=other.id if other else stable.id)
        write_routing(self.state.routing_file, routing)
        return read_routing(self.state.routing_file) or routing

    # -- the model version ---------------------------------------------------------------------------
    def serve_model(self, stable: Revision, canary: Revision, build: Any) -> Revision:
        """The canary's Triton version: the stable's when the model is the same, else a new one."""
        if canary.model_hash == stable.model_hash:
            return Revision(**{**canary.to_dict(), "llm_version": stable.llm_version})
        from llmctl.rollout.versions import add_version

        self.say(f"serving model {build.key} as a new version of {LLM_MODEL}")
        version = add_version(
            self.state.models_dir,
            self.grpc_url,
            build.path / LLM_MODEL,
            dict(build.manifest.get("parameters") or {}),
            timeout_s=300.0,
        )
        return Revision(**{**canary.to_dict(), "llm_version": str(version)})

    def drop_model(self, rev: Revision, keep: Sequence[Revision]) -> None:
        """Unload and delete ``rev``'s model version unless a revision in ``keep`` uses it."""
        if rev.llm_version in {k.llm_version for k in keep}:
            return
        from llmctl.rollout.versions import remove_version

        try:
            version = int(rev.llm_version)
        except ValueError:
            return
        self.say(f"unloading version {version} of {LLM_MODEL}")
        remove_version(self.state.models_dir, self.grpc_url, version, timeout_s=120.0)

    # -- outcomes ------------------------------------------------------------------------------------
    def rollback(self, stable: Revision, canary: Revision, reason: str) -> None:
        self.route(stable, None, 0, "canary")
        self.history.record(canary, "rolled-back", reason)
        self.drop_model(canary, [stable])

    def promote(self, stable: Revision, canary: Revision) -> None:
        self.route(canary, None, 0, "canary")
        self.history.record(canary, "active", "promoted by llmctl rollout")
        self.history.record(stable, "retired", f"replaced by {canary.id}")

    # -- a step --------------------------------------------------------------------------------------
    def quality(
        self, routing: Routing, roles: tuple[str, str], n: int
    ) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
        """Ask ``n`` evaluation questions of each arm; scores, and (requests, errors) per arm."""
        if n <= 0:
            return {}, {}
        from llmctl.gates.askers import doc_acls
        from llmctl.gates.quality import load_eval_set, score, select

        gate = self.bp.gates_for(self.target).quality
        if not gate.eval_set:
            return {}, {}
        questions = select(load_eval_set(self.bp.resolve_path(gate.eval_set)), n)
        out: dict[str, Any] = {}
        own: dict[str, tuple[int, int]] = {}
        acls: dict[str, Sequence[str]] = dict(doc_acls(self.bp))
        for role, name in zip(roles, ("stable", "canary"), strict=True):

            def subject(q: dict[str, Any], role: str = role) -> str:
                return observe.subject_for(routing, role, str(q.get("id")))

            responses = observe.ask_as(
                self.stack.gateway_url, questions, subject, self.stack.token_for
            )
            figures = score(questions, responses, acls)
            out[name] = figures
            failed = sum(1 for r in responses if r.get("status") != 200)
            own[name] = (len(responses), failed)
            out[name]["errors"] = failed
        return out, own


def _share(stable: observe.ArmStats, canary: observe.ArmStats) -> float | None:
    total = stable.requests + canary.requests
    return 100.0 * canary.requests / total if total else None


def run_rollout(
    bp: Any,
    target: str = "local",
    *,
    steps: Sequence[float] = DEFAULT_STEPS,
    step_duration_s: float = 60.0,
    quality_sample: int = 4,
    min_requests: int = 20,
    say: Say | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutReport:
    """Roll the blueprint's revision out beside the active one; promote or roll back."""
    if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(steps):
        raise LlmctlError("--steps must be increasing percentages in 1..100, e.g. 5,25,50,100")
    r = LocalRollout(bp, target, say)
    stable = r.stable()
    candidate, build = r.candidate()
    report = RolloutReport(bp.name, target, "canary", stable.id, candidate.id, "unchanged")
    if candidate.id == stable.id:
        report.reason = "the blueprint describes the active revision; nothing to roll out"
        return report
    if r.history.in_state("canary"):
        raise LlmctlError(
            f"a rollout is already in progress ({r.history.in_state('canary')[0].id}); "
            f"`llmctl rollback {bp.path}` ends it"
        )
    criteria = Criteria.from_blueprint(bp, min_requests)
    try:
        canary = r.serve_model(stable, candidate, build)
    except LlmctlError as exc:
        r.history.record(candidate, "rolled-back", f"its model did not load: {exc}")
        report.outcome, report.reason = "rolled-back", f"the canary's model did not load: {exc}"
        return report
    canary = r.history.record(canary, "canary", f"rollout beside {stable.id}")
    for weight in steps:
        routing = r.route(stable, canary, weight, "canary")
        (say or (lambda _m: None))(f"canary {canary.id} at {weight:g}%")
        sleep(SETTLE_S)
        before = observe.scrape(r.stack.gateway_url)
        sleep(step_duration_s)
        quality, own = r.quality(
            routing, ("stable", "canary"), quality_sample if weight < 100 else 0
        )
        after = observe.scrape(r.stack.gateway_url)
        s_stats = observe.window(before, after, stable.id)
        c_stats = observe.window(before, after, canary.id)
        step = StepReport(
            weight,
            s_stats,
            c_stats,
            _share(
                s_stats.minus(*own.get("stable", (0, 0))), c_stats.minus(*own.get("canary", (0, 0)))
            ),
            quality,
        )
        step.problems = judge(criteria, s_stats, c_stats, quality)
        report.steps.append(step)
        if not step.passed:
            r.rollback(stable, canary, "; ".join(step.problems))
            report.outcome, report.reason = (
                "rolled-back",
                f"at {weight:g}%: " + "; ".join(step.problems),
            )
            return report
    r.promote(stable, canary)
    report.outcome = "promoted"
    return report


def run_experiment(
    bp: Any,
    target: str = "local",
    *,
    split: float = 50.0,
    duration_s: float = 600.0,
    quality_sample: int = 0,
    say: Say | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutReport:
    """Serve the blueprint's revision as arm b beside the active one (arm a) for ``duration_s``,
    then report both arms and put every subject back on a; nothing is promoted."""
    r = LocalRollout(bp, target, say)
    stable = r.stable()
    candidate, build = r.candidate()
    report = RolloutReport(bp.name, target, "experiment", stable.id, candidate.id, "experiment")
    if candidate.id == stable.id:
        report.outcome = "unchanged"
        report.reason = "the blueprint describes the active revision: change the setting to test"
        return report
    arm_b = r.serve_model(stable, candidate, build)
    arm_b = r.history.record(arm_b, "canary", f"experiment arm b beside {stable.id}")
    try:
        routing = r.route(stable, arm_b, split, "experiment")
        sleep(SETTLE_S)
        before = observe.scrape(r.stack.gateway_url)
        sleep(duration_s)
        quality, own = r.quality(routing, ("a", "b"), quality_sample)
        after = observe.scrape(r.stack.gateway_url)
        a, b = observe.window(before, after, stable.id), observe.window(before, after, arm_b.id)
        report.steps.append(
            StepReport(
                split,
                a,
                b,
                _share(a.minus(*own.get("stable", (0, 0))), b.minus(*own.get("canary", (0, 0)))),
                quality,
            )
        )
    finally:
        r.route(stable, None, 0, "canary")
        r.history.record(arm_b, "rolled-back", "experiment ended")
        r.drop_model(arm_b, [stable])
    return report


def rollback(bp: Any, target: str = "local", say: Say | None = None) -> RolloutReport:
    """End a rollout now (the canary rolled back), or, without one, make the most recently
    retired revision active again while its model version is still served."""
    r = LocalRollout(bp, target, say)
    stable = r.stable()
    canaries = r.history.in_state("canary")
    if canaries:
        canary = canaries[0]
        r.rollback(stable, canary, "rolled back by llmctl rollback")
        return RolloutReport(
            bp.name, target, "canary", stable.id, canary.id, "rolled-back", "by request"
        )
    from llmctl.rollout.versions import served_versions

    served = {str(v) for v in served_versions(Path(r.state.models_dir))}
    retired = [
        x for x in r.history.in_state("retired") if x.llm_version in served and not x.archive
    ]
    if not retired:
        raise LlmctlError(
            "nothing to roll back to: no rollout in progress and no retired revision still served"
        )
    previous = max(retired, key=lambda x: x.updated_at)
    r.route(previous, None, 0, "canary")
    r.history.record(previous, "active", f"restored by llmctl rollback (was {stable.id})")
    r.history.record(stable, "rolled-back", f"rolled back to {previous.id}")
    return RolloutReport(
        bp.name, target, "canary", previous.id, stable.id, "rolled-back", f"back to {previous.id}"
    )
