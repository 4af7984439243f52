"""The ``local`` target: the whole stack as supervised processes on this machine.

Triton (from the nvidia-pytriton wheel) serves ``tensorrt_llm`` and ``embedder`` from a model
repository under the stack's state directory (``llmctl.state.StackState``:
``$LLMCTL_HOME/<blueprint>/<target>/``). Triton runs
with explicit model control, so applying a changed plan reloads only the models whose build key
changed, without a restart. Further components (the gateway) plug in as ``ComponentFactory``
functions and are started after Triton by the same ``apply``; ``local_target`` assembles the
stack a blueprint asks for. The last component is the watchdog (``llmctl.local.watchdog``), which
restarts a dead or hung component on its recorded argv and ports; ``up`` restarting Triton reuses
its previous ports too, so the gateway (configured with Triton's URL) keeps running.

State directory layout::

    components/<name>.json   what the supervisor started (pid, process group, ports, log)
    components/watchdog.heartbeat  rewritten by the watchdog every second (its health)
    logs/<name>.log          each component's output
    models/<model>/          Triton's model repository (copies of cached builds)
    backends/python/         links to the wheel's python backend and the matching stub
    stack.json               the applied plan: hash, model keys, endpoints
    .lock                    serialises concurrent up/down on one stack
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.errors import BuildError, StackError
from llmctl.local import tritonserver
from llmctl.local.repository import LocalRepository, ModelBuild
from llmctl.local.smoke import run_smoke
from llmctl.local.spec import LocalStackSpec
from llmctl.local.supervisor import (
    ComponentHealth,
    ComponentSpec,
    Supervisor,
    log_tail,
    reuse_port,
)
from llmctl.local.watchdog import TRITON, WATCHDOG, watchdog_spec
from llmctl.state import StackState
from llmctl.targets.base import NO_OPTIONS, BuildOptions, DestroyResult, Progress, ProgressFn
from llmctl.targets.local_results import (
    Action,
    ApplyResult,
    LocalBuild,
    LocalPlan,
    ModelStatus,
    StackStatus,
)
from llmctl.triton_client import HEALTH_LIVE

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

#: Builds the spec of an extra component once Triton's endpoints are known (e.g. the gateway).
#: ``prepare`` is False at plan time: describe the component, write nothing.
ComponentFactory = Callable[["LocalTarget", Mapping[str, str], bool], ComponentSpec]


def local_target(bp: Blueprint, name: str = "local", *, home: Path | None = None) -> LocalTarget:
    """The local target of a blueprint: Triton plus, when retrieval serves answers, the gateway."""
    from llmctl.gateway.component import gateway_factory
    from llmctl.local.spec import local_spec_from_blueprint

    return LocalTarget(
        local_spec_from_blueprint(bp),
        target=name,
        home=home,
        extra_components=(gateway_factory(bp),),
    )


def _noop(_: str) -> None:
    pass


class LocalTarget:
    """plan / apply / status / destroy for one blueprint on this machine."""

    kind = "local"

    def __init__(
        self,
        spec: LocalStackSpec,
        *,
        target: str = "local",
        home: Path | None = None,
        cache: Path | None = None,
        extra_components: tuple[ComponentFactory, ...] = (),
    ) -> None:
        self.spec = spec
        self.name = target
        self.state = StackState.of(spec.name, target, home)
        self.state_dir = self.state.dir
        self.repository = LocalRepository(cache)
        self.supervisor = Supervisor(self.state_dir)
        self.extra_components = extra_components

    # -- paths and records -------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.state.models_dir

    @property
    def stack_file(self) -> Path:
        return self.state.stack_file

    def log_file(self, component: str) -> Path:
        return self.state.log_file(component)

    def _applied(self) -> dict[str, Any]:
        try:
            return json.loads(self.stack_file.read_text())
        except (OSError, ValueError):
            return {}

    def endpoints(self) -> dict[str, str]:
        rec = self.supervisor.record(TRITON)
        if rec is None:
            return {}
        p = rec.ports
        endpoints = {
            "triton_http": f"http://127.0.0.1:{p['http']}",
            "triton_grpc": f"127.0.0.1:{p['grpc']}",
            "triton_metrics": f"http://127.0.0.1:{p['metrics']}/metrics",
        }
        # the other components (the gateway: what people and load tests call) by their names
        for other in self.supervisor.records():
            if other.name != TRITON and "http" in other.ports:
                endpoints[other.name] = f"http://127.0.0.1:{other.ports['http']}"
        return endpoints

    @contextlib.contextmanager
    def _locked(self, wait_s: float = 0.0) -> Iterator[None]:
        """The stack's lock; ``wait_s``: how long to retry (a watchdog just stopped may take a
        moment to release it: its threads exit after its leader reads as gone)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_s
        with open(self.state.lock_file, "w") as fh:
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError as exc:
                    if time.monotonic() < deadline:
                        time.sleep(0.1)
                        continue
                    raise StackError(
                        f"another llmctl (or the stack's watchdog, restarting a component) is "
                        f"changing stack {self.spec.name!r} right now "
                        f"({self.state_dir}); wait for it to finish"
                    ) from exc
            yield

    def _triton_identity(self) -> str:
        """What forces a Triton restart (not a model reload) when it changes."""
        doc = {
            "args": list(self.spec.triton_args),
            "ports": [self.spec.http_port, self.spec.grpc_port, self.spec.metrics_port],
            "binary": os.environ.get(tritonserver.ENV_BINARY, ""),
        }
        return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]

    # -- what Triton serves --------------------------------------------------------------------
    def served_models(self, timeout_s: float = 5.0) -> dict[str, ModelStatus]:
        """Triton's own view: each model's state and the build key in its loaded config."""
        from llmctl.triton_client import ControlError, ModelControl

        eps = self.endpoints()
        if not eps:
            return {}
        expected = self._applied().get("models", {})
        out: dict[str, ModelStatus] = {}
        try:
            with ModelControl(eps["triton_grpc"]) as control:
                for entry in control.index(timeout_s):
                    ready = entry.state == "READY"
                    out[entry.name] = ModelStatus(
                        name=entry.name,
                        version=entry.version,
                        state=entry.state or "absent",
                        key=control.build_key(entry.name, timeout_s) if ready else None,
                        expected_key=expected.get(entry.name),
                        reason=entry.reason,
                    )
        except ControlError:
            return {}
        return out

    # -- build and plan ----------------------------------------------------------------------------
    def build(self, options: BuildOptions = NO_OPTIONS, on_progress: Progress = None) -> LocalBuild:
        """The model repository in the content-addressed cache (nothing in the stack's state)."""
        if options != NO_OPTIONS:
            raise StackError(
                "--dry-run and --emit-job apply to kubernetes targets (TensorRT-LLM engines)"
            )
        try:
            builds = self.repository.build(self.spec, on_progress)
        except BuildError as exc:
            raise StackError(str(exc)) from exc
        return LocalBuild(self.name, tuple(builds))

    def plan(self, on_progress: ProgressFn | None = None) -> LocalPlan:
        """Compare what the spec asks for with what runs; change nothing."""
        try:
            desired = self.repository.keys(self.spec)
        except BuildError as exc:
            raise StackError(str(exc)) from exc
        triton_id = self._triton_identity()
        actions: list[Action] = []
        for name, key in desired.items():
            if not (self.repository.models_root / f"{name}-{key}" / "manifest.json").is_file():
                actions.append(Action("build", name, f"no cached build {key}"))

        health = self.supervisor.health(TRITON)
        rec = self.supervisor.record(TRITON)
        restart_reason = ""
        if health.state == "stopped":
            actions.append(Action("start", TRITON, "not running"))
        elif health.state != "healthy":
            restart_reason = f"{health.state}: {health.detail}".rstrip(": ")
        elif rec is not None and rec.labels.get("identity") != triton_id:
            restart_reason = "server settings changed"
        if restart_reason:
            actions.append(Action("restart", TRITON, restart_reason))

        if health.state != "healthy" or restart_reason:
            actions += [Action("load", name, f"build {key}") for name, key in desired.items()]
        else:
            served = self.served_models()
            for name, key in desired.items():
                now = served.get(name)
                if now is None or now.state != "READY":
                    actions.append(Action("load", name, f"build {key}"))
                elif now.key != key:
                    actions.append(Action("reload", name, f"build {now.key} -> {key}"))
            for name, now in served.items():
                if name not in desired and now.state == "READY":
                    actions.append(Action("unload", name, "no longer in the blueprint"))
        for factory in self.extra_components:
            spec = _with_identity(
                factory(self, self.endpoints() or self._placeholder_endpoints(), False)
            )
            if not self.supervisor.is_running(spec.name) or not self._same(spec):
                actions.append(Action("start", spec.name, "not running or changed"))
        watchdog = self._watchdog_spec()
        if watchdog is not None and not (
            self.supervisor.is_running(WATCHDOG) and self._same(watchdog)
        ):
            actions.append(Action("start", WATCHDOG, "not running or changed"))

        plan_hash = hashlib.sha256(
            json.dumps({"models": desired, "triton": triton_id}, sort_keys=True).encode()
        ).hexdigest()[:16]
        return LocalPlan(
            self.spec.name, desired, tuple(actions), plan_hash, self.name, self.endpoints()
        )

    def _placeholder_endpoints(self) -> dict[str, str]:
        return {"triton_http": "", "triton_grpc": "", "triton_metrics": ""}

    def _watchdog_spec(self) -> ComponentSpec | None:
        if not self.spec.watchdog:
            return None
        return _with_identity(watchdog_spec(self.state_dir, self.log_file(WATCHDOG)))

    def _same(self, spec: ComponentSpec) -> bool:
        rec = self.supervisor.record(spec.name)
        return rec is not None and rec.labels.get("identity") == _identity(spec)

    # -- apply -----------------------------------------------------------------------------------
    def apply(
        self,
        plan: LocalPlan | None = None,
        on_progress: ProgressFn | None = None,
        smoke: bool = True,
    ) -> ApplyResult:
        """Build what is missing, start or reload what changed, smoke-test; idempotent.

        On failure nothing this call started is left running; a failed *reload* leaves the
        previous model serving (Triton keeps it) and says so.
        """
        say = on_progress or _noop
        started = time.monotonic()
        with self._locked():
            plan = plan or self.plan()
            if not plan.changed:
                return ApplyResult(plan, False, self.endpoints(), (), (), None, 0.0)
            deadline = started + self.spec.startup_timeout_s
            try:
                builds = {b.name: b for b in self.repository.build(self.spec, say)}
            except BuildError as exc:
                raise StackError(str(exc)) from exc
            verbs = {(a.verb, a.subject) for a in plan.actions}
            fresh = ("start", TRITON) in verbs or ("restart", TRITON) in verbs
            loaded: list[str] = []
            previous = self.supervisor.record(TRITON)
            try:
                if fresh:
                    if ("restart", TRITON) in verbs:
                        say("stopping the previous Triton")
                        self.supervisor.stop(TRITON)
                    self._start_triton(builds, deadline, say, previous.ports if previous else {})
                loads = [a for a in plan.actions if a.verb in ("load", "reload")]
                for action in loads:
                    if not fresh:
                        self._install_model(builds[action.subject])
                # Triton loads models on its own thread pool: ask for all of them at once, so
                # llama.cpp and torch start-up overlap (the largest share of a cold ``up``).
                with ThreadPoolExecutor(max_workers=max(1, len(loads))) as pool:
                    futures = [
                        pool.submit(self._load_model, a.subject, deadline, say, a.verb == "reload")
                        for a in loads
                    ]
                    for future in futures:
                        future.result()
                loaded = [a.subject for a in loads]
                for action in plan.actions:
                    if action.verb == "unload":
                        self._unload_model(action.subject, say)
                self._start_extra_components(deadline, say)
                result_smoke = None
                if smoke:
                    say("smoke test: one streamed generation, one embedding batch")
                    emb = self.spec.embedder
                    result_smoke = run_smoke(
                        self.endpoints()["triton_grpc"],
                        embedder=emb is not None,
                        dimensions=emb.dimensions if emb else None,
                    )
            except BaseException:
                if fresh:
                    say("start failed; stopping what was started")
                    self._teardown()
                raise
            self._write_applied(plan)
            return ApplyResult(
                plan=plan,
                changed=True,
                endpoints=self.endpoints(),
                built=tuple(n for n, b in builds.items() if b.built),
                loaded=tuple(loaded),
                smoke=result_smoke,
                seconds=time.monotonic() - started,
            )

    def _install_model(self, build: ModelBuild) -> None:
        """Copy a cached build into Triton's repository (fresh files, so Triton sees a change)."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        dest = self.models_dir / build.name
        tmp = self.models_dir / f".{build.name}.new"
        old = self.models_dir / f".{build.name}.old"
        for p in (tmp, old):
            shutil.rmtree(p, ignore_errors=True)
        shutil.copytree(build.model_dir, tmp)
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)

    def _start_triton(
        self,
        builds: Mapping[str, ModelBuild],
        deadline: float,
        say: ProgressFn,
        previous: Mapping[str, int],
    ) -> None:
        install = tritonserver.find_triton()
        shutil.rmtree(self.models_dir, ignore_errors=True)
        for build in builds.values():
            self._install_model(build)
        backend_dir = tritonserver.prepare_backend_dir(install, self.state.backends_dir)
        # the previous ports while free: the gateway's config names them, so it needs no restart
        ports = tritonserver.TritonPorts(
            http=reuse_port(self.spec.http_port, previous.get("http")),
            grpc=reuse_port(self.spec.grpc_port, previous.get("grpc")),
            metrics=reuse_port(self.spec.metrics_port, previous.get("metrics")),
        )
        if len(set(ports.as_dict().values())) < 3:  # the kernel may hand out a port twice
            ports = tritonserver.TritonPorts(ports.http, reuse_port(0, 0), reuse_port(0, 0))
        argv = tritonserver.build_argv(
            install,
            model_repository=self.models_dir,
            backend_dir=backend_dir,
            ports=ports,
            extra_args=self.spec.triton_args,
        )
        spec = ComponentSpec(
            name=TRITON,
            argv=tuple(argv),
            env=tritonserver.build_env(install),
            health_url=f"http://127.0.0.1:{ports.http}{HEALTH_LIVE}",
            log_file=self.log_file(TRITON),
            ports=ports.as_dict(),
            cwd=self.state_dir,
            labels={"identity": self._triton_identity(), "source": install.source},
            startup_timeout_s=self.spec.startup_timeout_s,
        )
        say(f"starting Triton ({install.source}) on 127.0.0.1:{ports.http}")
        self.supervisor.start(spec)
        self.supervisor.wait_healthy(
            TRITON,
            max(0.0, deadline - time.monotonic()),
            say,
            budget_s=self.spec.startup_timeout_s,
        )

    def _load_model(self, name: str, deadline: float, say: ProgressFn, reload: bool) -> None:
        from llmctl.triton_client import ControlError, ModelControl

        say(f"{'reloading' if reload else 'loading'} model {name}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self._not_ready(name, "no time left")
        with ModelControl(self.endpoints()["triton_grpc"]) as control:
            try:
                control.load(name, remaining)
            except ControlError as exc:
                if not self.supervisor.is_running(TRITON):
                    self._crashed(f"Triton exited while loading {name}")
                if exc.unreachable:
                    self._not_ready(name, str(exc))
                keep = " (the previous version keeps serving)" if reload else ""
                raise StackError(
                    f"model {name} failed to load{keep}: {exc}; see {self.log_file(TRITON)}:\n"
                    + log_tail(self.log_file(TRITON), keywords=(name, "error", "exception"))
                ) from exc
            if not control.model_ready(name):
                self._not_ready(name, f"Triton says {name} is not ready")

    def _unload_model(self, name: str, say: ProgressFn) -> None:
        from llmctl.triton_client import ModelControl

        say(f"unloading model {name}")
        with ModelControl(self.endpoints()["triton_grpc"]) as control:
            control.unload(name)
        shutil.rmtree(self.models_dir / name, ignore_errors=True)

    def _not_ready(self, name: str, detail: str) -> None:
        raise StackError(
            f"model {name} not ready within {self.spec.startup_timeout_s:g} s ({detail}); see "
            f"{self.log_file(TRITON)}:\n"
            + log_tail(self.log_file(TRITON), keywords=(name, "error"))
        )

    def _crashed(self, message: str) -> None:
        raise StackError(
            f"{message}; see {self.log_file(TRITON)}:\n"
            + log_tail(self.log_file(TRITON), keywords=("error", "signal", "fatal", "abort"))
        )

    def _start_extra_components(self, deadline: float, say: ProgressFn) -> None:
        """The factories' components, then the watchdog (last, so ``stop_all`` stops it first)."""
        endpoints = self.endpoints()
        specs = [
            _with_identity(factory(self, endpoints, True)) for factory in self.extra_components
        ]
        watchdog = self._watchdog_spec()
        for spec in specs + ([watchdog] if watchdog is not None else []):
            spec = replace(spec, startup_timeout_s=self.spec.startup_timeout_s)
            if self.supervisor.is_running(spec.name) and self._same(spec):
                continue
            self.supervisor.stop(spec.name)
            say(f"starting {spec.name}")
            self.supervisor.start(spec)
            self.supervisor.wait_healthy(
                spec.name,
                max(0.0, deadline - time.monotonic()),
                say,
                budget_s=self.spec.startup_timeout_s,
            )

    def _write_applied(self, plan: LocalPlan) -> None:
        doc = {
            "stack": plan.stack,
            "plan_hash": plan.plan_hash,
            "models": plan.models,
            "blueprint_hash": self.spec.blueprint_hash,
            "applied_at": time.time(),
            "endpoints": self.endpoints(),
        }
        tmp = self.stack_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, self.stack_file)

    def _teardown(self) -> list[str]:
        stopped = self.supervisor.stop_all()
        for path in (self.models_dir, self.state.backends_dir, self.supervisor.components_dir):
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.stack_file.unlink()
        return stopped

    # -- status / destroy ------------------------------------------------------------------------
    def expected_components(self) -> list[str]:
        """What a running stack must have: Triton, the factories' components, the watchdog."""
        endpoints = self.endpoints() or self._placeholder_endpoints()
        names = [TRITON] + [
            factory(self, endpoints, False).name for factory in self.extra_components
        ]
        return names + ([WATCHDOG] if self.spec.watchdog else [])

    def status(self) -> StackStatus:
        applied = self._applied()
        records = self.supervisor.records()
        if not records:
            return StackStatus(
                self.spec.name,
                "stopped",
                (),
                (),
                {},
                applied.get("plan_hash"),
                str(self.state_dir),
                self.name,
            )
        recorded = {r.name for r in records}
        components = tuple(self.supervisor.health(r.name) for r in records) + tuple(
            _missing(name, self.log_file(name))
            for name in self.expected_components()
            if name not in recorded
        )
        problems = [
            f"{c.name} is {c.state}: {c.detail}".rstrip(": ") for c in components if not c.ok
        ]
        models: tuple[ModelStatus, ...] = ()
        triton = next((c for c in components if c.name == TRITON), None)
        if triton is not None and triton.ok:
            served = self.served_models()
            expected = applied.get("models", {})
            names = sorted(set(served) | set(expected))
            models = tuple(
                served.get(n) or ModelStatus(n, "", "absent", None, expected.get(n)) for n in names
            )
            for m in models:
                if m.expected_key and m.state != "READY":
                    problems.append(f"model {m.name} is {m.state} {m.reason}".rstrip())
                elif m.expected_key and m.key != m.expected_key:
                    problems.append(f"model {m.name} serves {m.key}, expected {m.expected_key}")
        return StackStatus(
            stack=self.spec.name,
            state="degraded" if problems else "running",
            components=components,
            models=models,
            endpoints=self.endpoints(),
            plan_hash=applied.get("plan_hash"),
            state_dir=str(self.state_dir),
            target=self.name,
            problems=tuple(problems),
        )

    def destroy(self, on_progress: ProgressFn | None = None) -> DestroyResult:
        """Stop every component (SIGTERM, then SIGKILL the group) and remove the runtime state."""
        say = on_progress or _noop
        if not self.state_dir.exists():  # never started: nothing to stop, and nothing to write
            return DestroyResult(self.spec.name, self.name, ())
        # The watchdog first, and before the lock: it may hold the lock while it restarts
        # something, and it must not restart what is stopped here.
        first = [WATCHDOG] if self.supervisor.stop(WATCHDOG) else []
        with self._locked(wait_s=10.0 if first else 0.0):
            for rec in self.supervisor.records():
                say(f"stopping {rec.name} (pid {rec.pid})")
            return DestroyResult(self.spec.name, self.name, tuple(first + self._teardown()))


def _identity(spec: ComponentSpec) -> str:
    doc = spec.identity()
    doc["labels"].pop("identity", None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _missing(name: str, log_file: Path) -> ComponentHealth:
    """An expected component with no record: it failed to start (its record was dropped)."""
    detail = f"expected but not running (it failed to start or was stopped); see {log_file}"
    return ComponentHealth(name, "missing", None, None, {}, str(log_file), detail)


def _with_identity(spec: ComponentSpec) -> ComponentSpec:
    return replace(spec, labels={**spec.labels, "identity": _identity(spec)})
