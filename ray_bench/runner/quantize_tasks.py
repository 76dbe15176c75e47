"""Quantize many variants in parallel as Ray tasks, each in the quantization environment.

llmcompressor pins a compressed-tensors that vLLM cannot use, so the two live in
separate environments (docs/quantize.md). The driver (this module, any environment
with Ray and ray-bench) ships each variant to a task that runs in the quantization
environment through a Ray runtime environment: ``py_executable`` of a separate venv
(same Python and Ray versions) or a ``pip`` list.

Order of work: refuse existing outputs up front, run one cheap *preflight* task in the
quantization environment (is llmcompressor there? load the calibration text once:
offline or a bad file fails here, before any model is loaded), then one task per
variant. GPU tasks reserve ``gpus_per_task`` GPUs and no CPU (pitfalls.md); CPU tasks
reserve ``cpus_per_task`` CPUs. A failed variant is reported and the others go on.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from ray_bench.errors import DependencyError, RayBenchError
from ray_bench.quantize.config import CalibrationConfig, QuantizeEnvironment, QuantizeResources
from ray_bench.quantize.plan import VariantResult, VariantTask

#: Environment variable naming the interpreter of the quantization venv.
QUANT_PYTHON_ENV = "RAY_BENCH_QUANT_PYTHON"

ResultCallback = Callable[[VariantResult], None]


def runtime_env_for(environment: QuantizeEnvironment) -> dict[str, Any] | None:
    """The Ray ``runtime_env`` of quantization tasks (``None``: the driver's own environment)."""
    env: dict[str, Any] = {}
    python = environment.python or os.environ.get(QUANT_PYTHON_ENV) or None
    if python:
        if not os.path.isfile(python):
            from ray_bench.errors import ConfigError

            raise ConfigError(
                f"quantization interpreter {python!r} does not exist",
                hint="Point --quant-python (or RAY_BENCH_QUANT_PYTHON) at the python of a venv with "
                "ray-bench[quantize], e.g. .venv-quant/bin/python.",
            )
        env["py_executable"] = python
    elif environment.pip:
        env["pip"] = list(environment.pip)
    if environment.env_vars:
        env["env_vars"] = dict(environment.env_vars)
    return env or None


def task_options(
    resources: QuantizeResources, device: str, runtime_env: dict[str, Any] | None, model_name: str | None = None
) -> dict[str, Any]:
    """Ray options of one variant task of ``model_name`` on ``device`` (``gpu`` or ``cpu``)."""
    opts: dict[str, Any] = {"max_retries": 0}
    if device == "gpu":
        gpus = resources.gpus_for(model_name) if model_name else resources.gpus_per_task
        opts.update(num_gpus=gpus, num_cpus=0)
    else:
        opts.update(num_cpus=resources.cpus_per_task, num_gpus=0)
    if runtime_env:
        opts["runtime_env"] = runtime_env
    return opts


def resolve_device(resources: QuantizeResources) -> str:
    """``gpu`` or ``cpu``; ``auto`` picks GPUs when the cluster has enough for one task."""
    import ray

    if resources.device != "auto":
        return resources.device
    return "gpu" if ray.cluster_resources().get("GPU", 0) >= resources.gpus_per_task else "cpu"


def preflight(calibrations: list[CalibrationConfig]) -> dict[str, Any]:
    """Runs in the quantization environment: check llmcompressor, load each calibration set once.

    Errors travel as data (``error``/``hint``), not exceptions, so their hints survive Ray.

    Returns:
        ``{"ok": False, "error", "hint"}`` when llmcompressor is missing, else ``{"ok": True,
        "calibrations": [...]}`` with, per config, ``{"data": CalibrationData}`` or
        ``{"error", "hint"}``.
    """
    import importlib.util

    if importlib.util.find_spec("llmcompressor") is None:
        exc = DependencyError("llmcompressor", "quantize")
        hint = (f"{exc.hint} Or run the tasks in a separate quantization venv: --quant-python PATH or "
                f"{QUANT_PYTHON_ENV} (docs/quantize.md).")
        return {"ok": False, "error": f"DependencyError: {exc} (python: {sys.executable})", "hint": hint}
    from ray_bench.quantize.calibration import load_calibration

    loaded: list[dict[str, Any]] = []
    for cfg in calibrations:
        try:
            loaded.append({"data": load_calibration(cfg)})
        except RayBenchError as exc:
            loaded.append({"error": f"{type(exc).__name__}: {exc}", "hint": exc.hint})
    return {"ok": True, "calibrations": loaded}


def run_variant(task: VariantTask, calibration: Any) -> VariantResult:
    """Runs in the quantization environment: make one variant, never raise."""
    start = time.perf_counter()
    try:
        from ray_bench.quantize.api import quantize_variant
        from ray_bench.quantize.card import read_card

        path = quantize_variant(task, calibration)
        return VariantResult(task.name, "ok", str(path), wall_time_s=time.perf_counter() - start, card=read_card(path))
    except RayBenchError as exc:
        return VariantResult(task.name, "failed", error=f"{type(exc).__name__}: {exc}", hint=exc.hint,
                             wall_time_s=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - one variant's bug must not stop the others
        detail = traceback.format_exc(limit=-3)
        return VariantResult(task.name, "failed", error=f"{type(exc).__name__}: {exc}",
                             hint=f"Unexpected error; last frames:\n{detail}", wall_time_s=time.perf_counter() - start)


def _failed(task: VariantTask, error: str, hint: str | None) -> VariantResult:
    return VariantResult(task.name, "failed", error=error, hint=hint)


def triage(tasks: list[VariantTask], *, skip_existing: bool) -> tuple[list[VariantTask], list[VariantResult]]:
    """Split off variants that need no task: complete outputs (skipped or refused)."""
    from ray_bench.quantize.card import read_card
    from ray_bench.quantize.output import check_target, is_complete

    todo, done = [], []
    for task in tasks:
        if skip_existing and is_complete(task.target):
            done.append(VariantResult(task.name, "skipped", str(task.target), card=read_card(task.target)))
            continue
        try:
            check_target(task.target, overwrite=task.overwrite)
        except RayBenchError as exc:
            done.append(_failed(task, str(exc), exc.hint))
            continue
        todo.append(task)
    return todo, done


def run_quantize_tasks(
    tasks: list[VariantTask],
    *,
    resources: QuantizeResources,
    environment: QuantizeEnvironment,
    ray_address: str | None = None,
    skip_existing: bool = False,
    on_result: ResultCallback | None = None,
) -> list[VariantResult]:
    """Make every variant as a Ray task; return one result per task, in the input order.

    Uses the Ray instance already initialised, joins ``ray_address``, or starts (and
    stops) a local one.
    """
    from ray_bench.runner.session import ray_session

    report = on_result or (lambda r: None)
    runtime_env = runtime_env_for(environment)
    todo, done = triage(tasks, skip_existing=skip_existing)
    for result in done:
        report(result)
    results = {r.name: r for r in done}
    if todo:
        with ray_session(ray_address):
            for result in _schedule(todo, resources, runtime_env):
                results[result.name] = result
                report(result)
    return [results[t.name] for t in tasks]


def _schedule(tasks: list[VariantTask], resources: QuantizeResources, runtime_env: dict[str, Any] | None):
    import ray

    from ray_bench.quantize.methods import get_method

    device = resolve_device(resources)
    configs = list(dict.fromkeys(t.calibration for t in tasks if get_method(t.method).needs_calibration))
    checked = ray.get(ray.remote(preflight).options(**task_options(resources, "cpu", runtime_env)).remote(configs))
    if not checked["ok"]:
        for task in tasks:
            yield _failed(task, checked["error"], checked["hint"])
        return
    refs = {cfg: ray.put(c["data"]) for cfg, c in zip(configs, checked["calibrations"]) if "data" in c}
    failed = {cfg: c for cfg, c in zip(configs, checked["calibrations"]) if "data" not in c}
    runnable = []
    for task in tasks:
        if get_method(task.method).needs_calibration and task.calibration in failed:
            yield _failed(task, failed[task.calibration]["error"], failed[task.calibration]["hint"])
        else:
            runnable.append(task)
    yield from _run_all(runnable, refs, resources, device, runtime_env)


def _run_all(tasks: list[VariantTask], refs: dict, resources: QuantizeResources, device: str, runtime_env):
    import ray

    from ray_bench.quantize.methods import get_method

    remote = ray.remote(run_variant)
    limit = resources.max_parallel or max(1, len(tasks))
    pending: dict[Any, VariantTask] = {}
    queue = list(tasks)
    while queue or pending:
        while queue and len(pending) < limit:
            task = queue.pop(0)
            data = refs.get(task.calibration) if get_method(task.method).needs_calibration else None
            opts = task_options(resources, device, runtime_env, task.model.name)
            pending[remote.options(**opts).remote(task, data)] = task
        ready, _ = ray.wait(list(pending), num_returns=1)
        task = pending.pop(ready[0])
        try:
            yield ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            # The worker died (OOM kill, node loss): report it, keep the others going.
            yield _failed(task, f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
                          "The task's worker died; check memory per task (--gpus-per-task) and the Ray logs.")
