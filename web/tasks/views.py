"""What the task pages show: step sections assembled from the registry, runs and files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.models import RunState, StepRun, Task
from jobs.storage import list_task_files
from pipeline.steps import STEPS, StepSpec
from web.forms import FormField, form_fields


@dataclass
class StepSection:
    spec: StepSpec
    run: StepRun | None
    fields: list[FormField] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    blocked_by: str | None = None

    @property
    def live(self) -> bool:
        return self.run is not None and self.run.state.active

    @property
    def state(self) -> str:
        return self.run.state.value if self.run else "new"

    @property
    def plots(self) -> list[dict]:
        # top-level plots only: per-candidate cutouts live in sub-folders (vetting pages)
        return [
            f for f in self.files if f["name"].lower().endswith(".png") and "/" not in f["name"]
        ]


def step_section(
    task: Task,
    spec: StepSpec,
    runs: dict[str, StepRun],
    files_by_name: dict[str, dict],
    errors: dict[str, str] | None = None,
    form_values: dict[str, Any] | None = None,
) -> StepSection:
    run = runs.get(spec.name)
    section = StepSection(spec=spec, run=run)
    if not spec.available:
        return section
    values = form_values if form_values is not None else task.config.get(spec.name, {})
    section.fields = form_fields(spec.config_model, values, errors)
    if run is not None and run.state == RunState.DONE:
        section.files = [files_by_name[name] for name in run.files if name in files_by_name]
    active = [r for r in runs.values() if r.state.active and r.step != spec.name]
    if active:
        section.blocked_by = active[0].step
    return section


def all_sections(task: Task, runs: dict[str, StepRun]) -> list[StepSection]:
    files = {f["name"]: f for f in list_task_files(task.id)}
    return [step_section(task, spec, runs, files) for spec in STEPS]
