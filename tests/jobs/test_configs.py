"""The shipped run configs and cluster.yaml validate offline; the cluster keeps token auth on."""

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ray_bench.config import RunConfig, build_config, load_yaml
from ray_bench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["example_run.yaml", "local_cpu.yaml"])
def test_run_configs_validate(name):
    config = build_config(RunConfig, load_yaml(ROOT / "jobs" / name), name)
    assert config.models and len({m.name for m in config.models}) == len(config.models)


def test_judge_config_validates():
    from ray_bench.config import JudgeConfig

    config = build_config(JudgeConfig, load_yaml(ROOT / "jobs" / "judge.yaml"), "judge.yaml")
    assert config.judge.model.path == "meta-llama/Llama-Guard-3-8B" and config.judge.engine.max_new_tokens == 100
    assert config.judge.engine.temperature == 0


def test_unknown_key_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a=x/y]\ndatasets: [BBQ]\ndata_dir: d\nout_dir: o\nshard_sise: 5\n")
    with pytest.raises(ConfigError, match="shard_sise"):
        build_config(RunConfig, load_yaml(bad), "bad.yaml")


def test_cluster_yaml_passes_ray_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler

    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(copy.deepcopy(cfg), schema)
    gpu = cfg["available_node_types"]["worker.gpu.l4"]
    assert gpu["min_workers"] == 0 and gpu["resources"]["GPU"] == 1
    assert os.access(ROOT / "jobs" / "submit.sh", os.X_OK)


# --- Token authentication on the cluster (cluster.yaml) ---------------------------------------

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _ray_start_commands(command: str) -> list[tuple[dict[str, str], list[str]]]:
    """``(environment, arguments)`` of each ``ray start`` in one shell command line.

    The environment is what the line's ``export NAME=VALUE`` segments and the ``NAME=VALUE``
    words before ``ray`` set; segments are split at ``;``, ``&&`` and ``||``.
    """
    env: dict[str, str] = {}
    found = []
    for segment in re.split(r";|&&|\|\|", command):
        words = shlex.split(segment)
        if words[:1] == ["export"]:
            env.update(w.split("=", 1) for w in words[1:] if "=" in w)
            continue
        local = dict(env)
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            name, value = words.pop(0).split("=", 1)
            local[name] = value
        if words[:2] == ["ray", "start"]:
            found.append((local, words[2:]))
    return found


def _dashboard_host(args: list[str]) -> str:
    """The ``--dashboard-host`` of ``ray start`` arguments (Ray's default: localhost)."""
    for i, arg in enumerate(args):
        if arg.startswith("--dashboard-host="):
            return arg.split("=", 1)[1]
        if arg == "--dashboard-host" and i + 1 < len(args):
            return args[i + 1]
    return "127.0.0.1"


def _auth_problems(cfg: dict) -> list[str]:
    """Why a cluster config leaves Ray without token authentication (empty when it is safe)."""
    problems = []
    starts = [
        (key, env, args)
        for key in ("head_start_ray_commands", "worker_start_ray_commands")
        for command in cfg.get(key) or []
        for env, args in _ray_start_commands(command)
    ]
    if not any(key == "head_start_ray_commands" for key, _, _ in starts):
        problems.append("no `ray start` in head_start_ray_commands")
    for key, env, args in starts:
        # Unset is not enough: Ray 2.60's `ray start` then turns auth on only if a token file happens to exist.
        mode = env.get("RAY_AUTH_MODE", "<unset>")
        if mode.lower() != "token":
            problems.append(f"{key}: ray start with RAY_AUTH_MODE={mode}")
            host = _dashboard_host(args)
            if "--head" in args and host not in LOCAL_HOSTS:
                problems.append(f"{key}: dashboard on {host} without token auth")
    mounts = cfg.get("file_mounts") or {}
    if not any(remote.endswith("/.ray/auth_token") for remote in mounts):
        problems.append("file_mounts does not copy the token to ~/.ray/auth_token on the nodes")
    return problems


def _cluster_cfg() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_keeps_token_auth_on_every_node():
    cfg = _cluster_cfg()
    assert _auth_problems(cfg) == []
    assert "RAY_AUTH_MODE=disabled" not in (ROOT / "cluster.yaml").read_text()
    heads = [args for c in cfg["head_start_ray_commands"] for _, args in _ray_start_commands(c)]
    workers = [args for c in cfg["worker_start_ray_commands"] for _, args in _ray_start_commands(c)]
    assert len(heads) == 1 and "--head" in heads[0] and len(workers) == 1


@pytest.mark.parametrize(
    ("head", "worker", "expected"),
    [
        # The configuration the issue reported: auth off and the dashboard on every interface.
        ("RAY_AUTH_MODE=disabled ray start --head --dashboard-host=0.0.0.0",
         "RAY_AUTH_MODE=token ray start --address=h:6379",
         ["head_start_ray_commands: ray start with RAY_AUTH_MODE=disabled",
          "head_start_ray_commands: dashboard on 0.0.0.0 without token auth"]),
        ("ray start --head --dashboard-host 0.0.0.0", "RAY_AUTH_MODE=token ray start --address=h:6379",
         ["head_start_ray_commands: ray start with RAY_AUTH_MODE=<unset>",
          "head_start_ray_commands: dashboard on 0.0.0.0 without token auth"]),
        ("export RAY_AUTH_MODE=token; ray start --head --dashboard-host=0.0.0.0",
         "ulimit -n 65536; RAY_AUTH_MODE=disabled ray start --address=h:6379",
         ["worker_start_ray_commands: ray start with RAY_AUTH_MODE=disabled"]),
        ("ulimit -n 1; RAY_AUTH_MODE=TOKEN ray start --head --dashboard-host=0.0.0.0",
         "RAY_AUTH_MODE=token ray start --address=h:6379", []),
    ],
)
def test_auth_check_catches_disabled_auth_and_open_dashboard(head, worker, expected):
    # The checker itself, on hand-written commands (so a passing cluster.yaml test means something).
    cfg = {"head_start_ray_commands": ["ray stop", head], "worker_start_ray_commands": [worker],
           "file_mounts": {"~/.ray/auth_token": "~/.ray/auth_token"}}
    assert _auth_problems(cfg) == expected


def test_auth_check_wants_the_token_copied_to_the_nodes():
    cfg = {"head_start_ray_commands": ["RAY_AUTH_MODE=token ray start --head"], "file_mounts": {}}
    assert _auth_problems(cfg) == ["file_mounts does not copy the token to ~/.ray/auth_token on the nodes"]


# --- jobs/submit.sh passes the token or refuses ---------------------------------------------------

STUB_RAY = """#!/bin/sh
# Stand-in for the ray CLI: records its arguments (one a line) and environment, then succeeds.
printf '%s\\n' "$@" > "$RECORD/args"
env > "$RECORD/env"
"""


@pytest.fixture
def submit(tmp_path):
    """Run jobs/submit.sh with bash in a clean environment whose ``ray`` is a recording stub."""
    bin_dir, record, home = tmp_path / "bin", tmp_path / "record", tmp_path / "home"
    for d in (bin_dir, record, home):
        d.mkdir()
    stub = bin_dir / "ray"
    stub.write_text(STUB_RAY)
    stub.chmod(0o755)
    bash = shutil.which("bash")
    assert bash, "bash is needed to run jobs/submit.sh"

    def run(**env):
        for old in record.iterdir():  # what an earlier run in the same test recorded
            old.unlink()
        base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "RECORD": str(record)}
        proc = subprocess.run(
            [bash, str(ROOT / "jobs" / "submit.sh"), "jobs/example_run.yaml", "--out", "o"],
            env={**base, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )
        called = (record / "args").exists()
        args = (record / "args").read_text().splitlines() if called else None
        stub_env = dict(line.split("=", 1) for line in (record / "env").read_text().splitlines() if "=" in line) \
            if called else None
        return proc, args, stub_env

    run.home = home
    return run


def test_submit_refuses_without_any_token(submit):
    proc, args, _ = submit()
    assert proc.returncode == 2 and args is None  # ray was never called
    assert proc.stderr.startswith("jobs/submit.sh: no Ray auth token:")
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", f"{submit.home}/.ray/auth_token", "ray get-auth-token"):
        assert name in proc.stderr


def test_submit_passes_the_token_from_the_environment(submit):
    proc, args, env = submit(RAY_AUTH_TOKEN="tok-env-123")
    assert proc.returncode == 0, proc.stderr
    assert env["RAY_AUTH_TOKEN"] == "tok-env-123" and env["RAY_AUTH_MODE"] == "token"
    assert args[:2] == ["job", "submit"]
    tail = args[args.index("--") + 1:]
    # Relative paths resolve against the directory submitted from, not Ray's copy of it.
    root = tail[tail.index("--root") + 1]
    assert tail == ["ray-bench", "run", "--config", "jobs/example_run.yaml", "--root", root, "--quiet", "--out", "o"]
    assert Path(root).is_absolute()
    # The token must not travel in the arguments (runtime env JSON included): job details show them.
    assert not any("tok-env-123" in a for a in args)


def test_submit_uses_the_default_token_file(submit):
    token = submit.home / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("tok-file-456")
    proc, args, env = submit()
    assert proc.returncode == 0, proc.stderr
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(token)
    assert Path(env["RAY_AUTH_TOKEN_PATH"]).read_text() == "tok-file-456"
    assert "RAY_AUTH_TOKEN" not in env and args[:2] == ["job", "submit"]


def test_submit_uses_a_token_path_and_refuses_an_empty_one(submit, tmp_path):
    token = tmp_path / "cluster-token"
    token.write_text("tok-path-789")
    proc, _, env = submit(RAY_AUTH_TOKEN_PATH=str(token))
    assert proc.returncode == 0, proc.stderr
    assert env["RAY_AUTH_TOKEN_PATH"] == str(token) and env["RAY_AUTH_MODE"] == "token"
    token.write_text("")
    proc, args, _ = submit(RAY_AUTH_TOKEN_PATH=str(token))
    assert proc.returncode == 2 and args is None
    assert f"RAY_AUTH_TOKEN_PATH={token} is not a readable, non-empty file" in proc.stderr


def test_submit_refuses_auth_mode_disabled(submit):
    proc, args, _ = submit(RAY_AUTH_MODE="disabled", RAY_AUTH_TOKEN="tok")
    assert proc.returncode == 2 and args is None
    assert "RAY_AUTH_MODE is 'disabled'" in proc.stderr
