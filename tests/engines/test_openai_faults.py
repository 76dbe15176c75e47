"""The openai engine against a real local HTTP server that misbehaves on purpose.

The server (aiohttp, 127.0.0.1, a free port, in a thread) answers by the last user message:
``ok ...`` replies at once; ``429x2 ...`` / ``500x1 ...`` fail that many times first; ``retry-after``
answers 429 with ``Retry-After: 1`` once; ``always500``; ``garbage`` (HTTP 200, not JSON);
``slow`` (sleeps past the client's timeout); ``echo-key`` (a 400 whose message repeats the
Authorization header, as servers echo keys in errors). A model named ``missing`` gets 404 and
``locked`` 401. Every request is recorded server-side (body, headers, time), so retries are
counted where they arrive.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import defaultdict

import pytest

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.engines.base import GenerateRequest, create_engine
from ray_bench.errors import ConfigError, EngineError

SENTINEL_KEY = "sk-test-SENTINEL-0123456789abcdef"
KEY_ENV = "RAY_BENCH_TEST_OPENAI_KEY"


class FaultServer:
    def __init__(self) -> None:
        self.seen: dict[str, list[dict]] = defaultdict(list)
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    async def _chat(self, request):
        from aiohttp import web

        body = await request.json()
        text = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        calls = self.seen[text]
        calls.append({"body": body, "auth": request.headers.get("Authorization"), "at": time.monotonic()})
        n, head = len(calls), text.split()[0]
        if body["model"] == "missing":
            return web.json_response({"error": {"message": "The model `missing` does not exist."}}, status=404)
        if body["model"] == "locked":
            return web.json_response({"error": {"message": f"Incorrect API key provided: {request.headers.get('Authorization')}"}},
                                     status=401)
        if head[:4] in ("429x", "500x") and n <= int(head[4:]):
            return web.json_response({"error": {"message": "try later"}}, status=int(head[:3]))
        if text == "retry-after" and n == 1:
            return web.json_response({"error": {"message": "rate limited"}}, status=429, headers={"Retry-After": "1"})
        if text == "always500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if text == "garbage":
            return web.Response(text="<html>not json", status=200)
        if text == "slow":
            await asyncio.sleep(1.2)
        if text == "echo-key":
            return web.json_response({"error": {"message": f"bad request with {request.headers.get('Authorization')}"}},
                                     status=400)
        return web.json_response({"object": "chat.completion", "model": body["model"], "choices": [
            {"index": 0, "message": {"role": "assistant", "content": f"reply to {text}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

    def count(self, text: str) -> int:
        return len(self.seen[text])


@pytest.fixture(scope="module")
def server():
    srv = FaultServer()
    srv.thread.start()
    assert srv.ready.wait(20)
    yield srv
    srv.loop.call_soon_threadsafe(srv.loop.stop)
    srv.thread.join(10)


@pytest.fixture
def make_engine(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SENTINEL_KEY)
    engines = []

    def make(model="served", **options):
        opts = {"base_url": f"http://127.0.0.1:{server.port}/v1", "api_key_env": KEY_ENV, "backoff_base_s": 0.01,
                "backoff_cap_s": 0.05, "timeout_s": 5, **options}
        shared = opts.pop("_config", {})
        config = EngineConfig(name="openai", options=opts, **shared)
        engine = create_engine(ModelSpec(name="m", path=model), config)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def _req(qid: str, *turns: str) -> GenerateRequest:
    return GenerateRequest(qid, turns)


def test_429_and_500_are_retried_until_they_succeed(server, make_engine):
    engine = make_engine()
    out = engine.generate([_req("a", "429x2"), _req("b", "500x1"), _req("c", "ok plain")])
    assert [g.response for g in out] == ["reply to 429x2", "reply to 500x1", "reply to ok plain"]
    assert all(g.error is None for g in out) and out[0].num_output_tokens == 2
    assert (server.count("429x2"), server.count("500x1"), server.count("ok plain")) == (3, 2, 1)
    assert engine.stats.retries == 3


def test_retry_after_is_honoured(server, make_engine):
    engine = make_engine()
    (out,) = engine.generate([_req("a", "retry-after")])
    assert out.response == "reply to retry-after"
    first, second = server.seen["retry-after"]
    assert second["at"] - first["at"] >= 0.95  # the server asked for 1 s; backoff alone is <= 0.05 s


def test_a_failing_question_gets_its_error_while_the_others_succeed(server, make_engine):
    engine = make_engine(max_retries=2, timeout_s=0.3)
    started = time.monotonic()
    out = engine.generate([_req("a", "ok one"), _req("b", "always500"), _req("c", "garbage"), _req("d", "slow"),
                           _req("e", "ok two")])
    assert time.monotonic() - started < 3  # the slow one timed out; it did not wait 3 x 1.2 s
    assert [g.response for g in out] == ["reply to ok one", None, None, None, "reply to ok two"]
    assert out[1].error == "turn 0: HTTP 500: boom (3 attempt(s))"
    assert "not JSON" in out[2].error and "<html>not json" in out[2].error
    assert out[3].error == "turn 0: timed out after 0.3 s (3 attempt(s))"
    assert (server.count("always500"), server.count("garbage"), server.count("slow")) == (3, 1, 3)


def test_key_is_sent_as_bearer_and_never_written_anywhere(server, make_engine, caplog):
    caplog.set_level(logging.DEBUG)
    engine = make_engine(max_retries=1)
    out = engine.generate([_req("a", "ok key"), _req("b", "echo-key"), _req("c", "500x1 key")])
    assert server.seen["ok key"][0]["auth"] == f"Bearer {SENTINEL_KEY}"
    assert out[1].error == "turn 0: HTTP 400: bad request with Bearer [redacted]"
    with pytest.raises(EngineError) as info:
        make_engine(model="locked").generate([_req("x", "ok locked")])
    assert "401" in str(info.value)
    texts = [str(info.value), info.value.hint, repr(engine.info()), caplog.text, *(g.error or "" for g in out)]
    assert "retrying" in caplog.text  # the retry of "500x1 key" was logged...
    assert not [t for t in texts if SENTINEL_KEY in t]  # ...and no text holds the key


def test_a_fatal_status_stops_the_whole_call(server, make_engine):
    engine = make_engine(model="missing")
    with pytest.raises(EngineError, match="refused the request for model 'missing'.*404") as info:
        engine.generate([_req("a", "ok missing")])
    assert "served model's name" in info.value.hint


def test_a_server_that_keeps_failing_opens_the_breaker(server, make_engine):
    engine = make_engine(max_retries=0, breaker_threshold=2, breaker_cooldown_s=60)
    with pytest.raises(EngineError, match="failed 2 requests in a row"):
        engine.generate([_req(f"q{i}", "always500") for i in range(2)])
    before = server.count("always500")
    with pytest.raises(EngineError, match="fail at once"):
        engine.generate([_req("later", "always500")])
    assert server.count("always500") == before  # nothing was sent while the breaker is open


def test_turns_are_answered_in_order_with_the_decoding_sent(server, make_engine):
    engine = make_engine(_config={"temperature": 0.5, "top_p": 0.8, "max_new_tokens": 12, "seed": 7,
                                  "system_prompt": "Be brief."})
    (out,) = engine.generate([_req("conv", "ok first", "ok second")])
    assert out.responses == ("reply to ok first", "reply to ok second") and out.num_output_tokens == 4
    second = server.seen["ok second"][0]["body"]
    assert second["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ok first"},
                                  {"role": "assistant", "content": "reply to ok first"},
                                  {"role": "user", "content": "ok second"}]
    seed = int.from_bytes(hashlib.sha256(b"7\x1fconv\x1f1").digest()[:8], "little") & (2**63 - 1)
    assert {k: second[k] for k in ("model", "temperature", "top_p", "max_tokens", "seed")} == {
        "model": "served", "temperature": 0.5, "top_p": 0.8, "max_tokens": 12, "seed": seed}


def test_a_conversation_goes_as_it_is(server, make_engine):
    engine = make_engine(_config={"system_prompt": "not for judges"}, max_tokens_field="max_completion_tokens",
                         send_seed=False, extra_body={"top_k": 5})
    messages = (("user", "ok judge this"), ("assistant", "an answer"), ("user", "ok verdict?"))
    (out,) = engine.generate([GenerateRequest("j", messages=messages)])
    assert out.response == "reply to ok verdict?"
    body = server.seen["ok verdict?"][0]["body"]
    assert body["messages"] == [{"role": r, "content": c} for r, c in messages]
    assert body["max_completion_tokens"] == 256 and body["top_k"] == 5 and "seed" not in body and "max_tokens" not in body


def test_options_are_validated_and_the_key_variable_must_be_set(monkeypatch):
    def create(**options):
        return create_engine(ModelSpec(name="m", path="gpt"), EngineConfig(name="openai", options=options))

    with pytest.raises(ConfigError, match="credentials"):
        create(base_url="https://user:sk-secret@api.example.com/v1")
    with pytest.raises(ConfigError, match="extra_body may not set temperature"):
        create(extra_body={"temperature": 2})
    with pytest.raises(ConfigError, match="max_concurency"):
        create(max_concurency=4)
    with pytest.raises(ConfigError, match="above 2"):
        create_engine(ModelSpec(name="m", path="gpt"), EngineConfig(name="openai", temperature=2.5))
    monkeypatch.delenv("RAY_BENCH_UNSET_KEY", raising=False)
    with pytest.raises(EngineError, match="RAY_BENCH_UNSET_KEY .*not set") as info:
        create(api_key_env="RAY_BENCH_UNSET_KEY")
    assert "api_key_env=none" in info.value.hint
    engine = create(api_key_env="none")  # what a flag can say for "no key"
    try:
        assert engine.info().extra["api_key_env"] == "none"
        with pytest.raises(EngineError, match="cannot score closed questions"):
            engine.score_choices([])
    finally:
        engine.close()


def test_retry_after_forms():
    from email.utils import format_datetime
    from datetime import datetime, timedelta, timezone

    from ray_bench.engines.openai_client import retry_after_s

    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after": "3"}) == 3.0
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 27 <= retry_after_s({"retry-after": later}) <= 30
    assert retry_after_s({"retry-after": "soon"}) is None and retry_after_s({}) is None


def test_options_and_info_are_json_and_hold_no_key(make_engine):
    from ray_bench.engines.base import result_options

    engine = make_engine()
    info = engine.info()
    assert (info.engine, info.model_path, info.device) == ("openai", "served", "remote")
    assert info.extra["base_url"].startswith("http://127.0.0.1:") and info.extra["api_key_env"] == KEY_ENV
    config = EngineConfig(name="openai", options={"base_url": "http://h/v1", "api_key_env": KEY_ENV, "timeout_s": 3})
    assert result_options(config) == {"base_url": "http://h/v1"}  # limits and the key's variable are operational
    assert SENTINEL_KEY not in json.dumps(config.model_dump()) + repr(info)
