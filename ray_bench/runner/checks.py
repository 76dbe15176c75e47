"""The driver-side checks of a run, made before anything reserves a GPU: paths, engines, options.

Everything that can be refused without a model is refused here: model paths that look local
but do not exist (or hold no ``config.json`` for the engines that load checkpoints), unknown
engines or ones that do not import, bad engine options, an engine's own run checks (vLLM's
tensor parallelism), relative paths inside a Ray job, and closed questions for an engine that
cannot score choices (an API engine).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ray_bench.config import EngineConfig, JudgeOptions, ModelSpec, ResourceConfig, RunConfig, check_job_paths
from ray_bench.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

#: Engines that load a checkpoint directory (a local model path must hold its config.json).
MODEL_ENGINES = ("hf", "vllm")


def validate_models(config: RunConfig) -> None:
    """Fail on model paths that look local but do not exist (or, for the model engines, hold
    no ``config.json``), engines that are unknown or do not import, and bad engine options;
    the judge's too when the run has one; inside a Ray job, relative paths without a root."""
    from ray_bench.engines.base import API_ENGINES

    served = config.engine.name in API_ENGINES  # an API model's "path" is the server's model name
    check_job_paths({"data_dir": config.data_dir, "out_dir": config.out_dir,
                     **{f"model {m.name!r}": m.path for m in config.models if not served}}, config.root)
    check_models(config.models, config.engine, config.resources)
    if config.judge is not None:
        check_models([config.judge.model], config.judge.engine, config.judge.resources)


def check_scoring(engine: EngineConfig, questions: dict[str, pa.Table], judge: JudgeOptions | None = None) -> None:
    """Refuse closed questions, and a judge that scores ``p_unsafe``, for an engine that cannot score
    choices (an API engine), before any actor starts.

    Raises:
        ConfigError: naming the closed datasets, or the judge.
    """
    from ray_bench.engines.base import API_ENGINES
    from ray_bench.engines.openai_options import SCORING_HINT, SCORING_UNSUPPORTED
    from ray_bench.schema import KIND_CLOSED

    closed = [name for name, table in questions.items() if engine.name in API_ENGINES
              and table.num_rows and KIND_CLOSED in set(table.column("kind").to_pylist())]
    if closed:
        raise ConfigError(f"engine {engine.name!r} cannot answer the closed questions of {', '.join(closed)}: "
                          f"{SCORING_UNSUPPORTED}", hint=SCORING_HINT)
    if judge is not None and judge.score and judge.engine.name in API_ENGINES:
        raise ConfigError(f"judge engine {judge.engine.name!r} cannot compute p_unsafe: {SCORING_UNSUPPORTED}",
                          hint="Set judge.score: false in the config to judge with verdicts only.")


def check_models(models: list[ModelSpec], engine: EngineConfig, resources: ResourceConfig) -> None:
    """The driver-side checks of ``models`` loaded by ``engine`` (see :func:`validate_models`)."""
    from ray_bench.engines.base import (
        API_ENGINES,
        check_engine_options,
        check_engine_run,
        engine_names,
        resolve_engine_factory,
    )

    name = engine.name
    for model in [] if name in API_ENGINES else models:  # an API model's path is a served name
        path = Path(model.path).expanduser()
        # Hub ids are "name" or "org/name"; anything else is meant as a local path.
        looks_local = model.path.startswith(("/", ".", "~")) or model.path.count("/") > 1 or path.exists()
        if looks_local and not path.exists():
            raise ConfigError(
                f"model {model.name!r}: path {model.path!r} does not exist",
                hint="Pass an existing checkpoint directory or a Hugging Face id like org/name.",
            )
        if looks_local and name in MODEL_ENGINES and not (path / "config.json").is_file():
            raise ConfigError(
                f"model {model.name!r}: {model.path!r} is not a checkpoint directory (no config.json)",
                hint="Pass a directory written by save_pretrained (config.json, weights, tokenizer).",
            )
    if ":" in name:
        factory = resolve_engine_factory(name)  # imports it here, on the driver
        if not callable(factory):
            raise ConfigError(
                f"engine {name!r} is a {type(factory).__name__}, not a factory",
                hint="Point --engine at a callable (ModelSpec, EngineConfig) -> Engine.",
            )
    elif name not in engine_names():
        from ray_bench.errors import UnknownNameError

        raise UnknownNameError("engine", name, engine_names())
    check_engine_options(engine)
    check_engine_run(models, engine, resources)
