"""A local OpenAI-compatible stub server with a fixed latency per request (aiohttp, in a thread).

For ``ray-bench bench openai`` without a real server: every ``POST /v1/chat/completions`` waits
``latency_s`` (``asyncio.sleep``, so requests overlap as on a real server with spare capacity)
and answers a chat completion whose text is a pure function of the last user message. Also
``GET /health`` and ``GET /v1/models``. Binds to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from typing import Any

#: The model name the stub serves (it answers for any name it is asked).
STUB_MODEL = "stub"


def stub_reply(text: str) -> str:
    """The stub's deterministic answer to a user message."""
    return f"Score: {int(hashlib.sha256(text.encode()).hexdigest(), 16) % 101}/100"


class StubServer:
    """The stub, started by :meth:`start` (or ``with StubServer(...) as base_url``).

    Args:
        latency_s: The wait before each answer.

    Attributes:
        requests: Chat requests answered so far.
    """

    def __init__(self, latency_s: float = 0.05) -> None:
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        self.latency_s = latency_s
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        """Start serving in a background thread; returns :attr:`base_url`."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="openai-stub", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the stub server did not start within 30 s")
        return self.base_url

    def _serve(self, ready: threading.Event) -> None:
        from aiohttp import web

        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/health", lambda _: web.Response(text="ok"))
        app.router.add_get("/v1/models", lambda _: web.json_response({"object": "list", "data": [
            {"id": STUB_MODEL, "object": "model", "owned_by": "ray-bench"}]}))
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.1)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # the OS-assigned free port
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        await asyncio.sleep(self.latency_s)
        self.requests += 1
        users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
        text = stub_reply(users[-1] if users else "")
        return web.json_response({
            "id": f"chatcmpl-stub-{self.requests}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", STUB_MODEL),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())},
        })

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StubProcess:
    """The stub in its own Python process (so it does not share the benchmarked client's GIL).

    ``with StubProcess(latency_s) as base_url: ...``; the process is ended on exit.
    """

    def __init__(self, latency_s: float = 0.05) -> None:
        self.latency_s = latency_s
        self._proc: Any = None

    def __enter__(self) -> str:
        import subprocess
        import sys

        self._proc = subprocess.Popen([sys.executable, "-m", "ray_bench.bench.openai_stub", str(self.latency_s)],
                                      stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.__exit__()
            raise RuntimeError(f"the stub server process did not start (it printed {line!r})")
        return line

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


def _main(argv: list[str]) -> None:
    """``python -m ray_bench.bench.openai_stub LATENCY_S``: serve until terminated; prints the base URL."""
    import signal

    server = StubServer(float(argv[0]) if argv else 0.05)
    print(server.start(), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
