"""The typed ``training`` section: the job specification the data scientist hands the Slurm operator.

Kept apart from ``model.py`` because only ``llmctl train``, its rules and the hours reports read
it. Like the rest of the model it is built from a schema-valid document with the defaults applied,
so nothing here has a default of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int
    batch_size: int
    learning_rate: float
    held_out_fraction: float
    seed: int
    threads: int | None


@dataclass(frozen=True)
class TrainingResources:
    nodes: int
    gpus_per_node: int
    gpu_type: str | None
    cpus_per_task: int
    memory_gb: int
    time_limit: str | None
    expected_hours: float | None

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def expected_gpu_hours(self) -> float | None:
        return None if self.expected_hours is None else self.expected_hours * self.gpus

    @property
    def expected_cpu_hours(self) -> float | None:
        if self.expected_hours is None:
            return None
        return self.expected_hours * self.nodes * self.cpus_per_task


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: int
    gpus_per_node: int
    cpus_per_node: int | None
    max_time: str | None


@dataclass(frozen=True)
class SlurmPlacement:
    partition: str | None
    qos: str | None
    account: str | None
    constraint: str | None
    switches: int | None
    switches_wait_minutes: int
    exclusive: bool
    partitions: tuple[Partition, ...]

    def declared(self, name: str | None) -> Partition | None:
        for p in self.partitions:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True)
class TrainingKubernetes:
    image: str | None
    target: str | None


@dataclass(frozen=True)
class Training:
    recipe: str
    script: str | None
    dataset: str
    base_model: str | None
    output: str | None
    hyperparameters: Hyperparameters
    resources: TrainingResources
    slurm: SlurmPlacement
    kubernetes: TrainingKubernetes


def minutes(limit: str | None) -> float | None:
    """A Slurm time string (minutes, HH:MM:SS, D-HH:MM:SS) in minutes; None for none/unlimited."""
    if limit is None or limit.upper() in ("UNLIMITED", "INFINITE"):
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d{1,2}):(\d{2}):(\d{2})", limit)
    if m:
        days, h, mi, s = (int(x or 0) for x in m.groups())
        return days * 1440 + h * 60 + mi + s / 60
    return float(limit)


def build_training(doc: dict[str, Any] | None) -> Training | None:
    """The typed section, or None when the blueprint has no training section."""
    if doc is None:
        return None
    hp, rs, sl, k8 = doc["hyperparameters"], doc["resources"], doc["slurm"], doc["kubernetes"]
    return Training(
        recipe=doc["recipe"],
        script=doc.get("script"),
        dataset=doc["dataset"],
        base_model=doc.get("baseModel"),
        output=doc.get("output"),
        hyperparameters=Hyperparameters(
            epochs=hp["epochs"],
            batch_size=hp["batchSize"],
            learning_rate=float(hp["learningRate"]),
            held_out_fraction=float(hp["heldOutFraction"]),
            seed=hp["seed"],
            threads=hp.get("threads"),
        ),
        resources=TrainingResources(
            nodes=rs["nodes"],
            gpus_per_node=rs["gpusPerNode"],
            gpu_type=rs.get("gpuType"),
            cpus_per_task=rs["cpusPerTask"],
            memory_gb=rs["memoryGb"],
            time_limit=rs.get("timeLimit"),
            expected_hours=float(rs["expectedHours"]) if "expectedHours" in rs else None,
        ),
        slurm=SlurmPlacement(
            partition=sl.get("partition"),
            qos=sl.get("qos"),
            account=sl.get("account"),
            constraint=sl.get("constraint"),
            switches=sl.get("switches"),
            switches_wait_minutes=sl["switchesWaitMinutes"],
            exclusive=sl["exclusive"],
            partitions=tuple(
                Partition(
                    name=p["name"],
                    nodes=p["nodes"],
                    gpus_per_node=p["gpusPerNode"],
                    cpus_per_node=p.get("cpusPerNode"),
                    max_time=p.get("maxTime"),
                )
                for p in sl["partitions"]
            ),
        ),
        kubernetes=TrainingKubernetes(image=k8.get("image"), target=k8.get("target")),
    )
