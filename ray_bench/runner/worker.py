"""The model actor: pins one model (one engine) and runs the shard tasks of a stage sent to it."""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.errors import EngineStartError, RayBenchError

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_bench.engines.base import Engine
    from ray_bench.stages.base import ShardTask


class ModelWorker:
    """Holds one model for its life. Wrapped with ``ray.remote`` by the driver.

    The engine is created on the first call, so a restarted actor (after a crash)
    rebuilds it transparently before retrying the shard. A creation that fails is tried
    once per actor: the error is kept and every later call raises it at once as an
    :class:`~ray_bench.errors.EngineStartError` (a load costs minutes on a GPU, and
    retrying a checkpoint that cannot load gives the same error).
    """

    def __init__(self, model: ModelSpec, engine: EngineConfig) -> None:
        self.model = model
        self.engine_config = engine
        self._engine: Engine | None = None
        self._start_error: EngineStartError | None = None

    def _get_engine(self) -> Engine:
        if self._start_error is not None:
            raise self._start_error
        if self._engine is None:
            from ray_bench.engines.base import create_engine

            try:
                self._engine = create_engine(self.model, self.engine_config)
            except Exception as exc:  # noqa: BLE001 - any creation failure ends this model's run
                hint = exc.hint if isinstance(exc, RayBenchError) else None
                cause = str(exc) if isinstance(exc, RayBenchError) else f"{type(exc).__name__}: {exc}"
                self._start_error = EngineStartError(self.model.name, cause, hint)
                raise self._start_error from exc
        return self._engine

    def describe(self) -> dict[str, Any]:
        """Load the model and report the engine and placement (for the manifest)."""
        from dataclasses import asdict

        return {"engine": asdict(self._get_engine().info()), "placement": placement()}

    def run_shard(self, task: ShardTask, payload: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
        """Run a stage's task on one shard; returns the output table and run statistics."""
        started = time.time()
        table = task.run(self._get_engine(), payload)
        stats = {"seconds": round(time.time() - started, 3), "started_at": started, **placement()}
        return table, stats

    def close(self) -> bool:
        """Release the engine (vLLM: shut its engine core down); the driver kills the actor after."""
        if self._engine is None:
            return False
        self._engine.close()
        self._engine = None
        return True


def placement() -> dict[str, Any]:
    """Where this process runs: host, pid and the accelerator ids Ray assigned."""
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "gpus": []}
    try:
        import ray

        ctx = ray.get_runtime_context()
        info["node_id"] = ctx.get_node_id()
        info["gpus"] = [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])]
    except Exception:  # noqa: BLE001 - outside Ray (tests), placement is just host/pid
        pass
    return info
