"""The report in a real browser (headless Chromium): it renders, and every image decodes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from ray_bench.report.figures import FIGURE_NAMES

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.slow,
    # CI installs chromium (.ci/run), so there a missing browser is a failure, not a skip.
    pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                       reason="needs /usr/bin/chromium (apt-get install chromium)"),
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def test_screenshot_is_not_blank(report, tmp_path):
    _, result = report
    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", result.html.resolve().as_uri())
    assert shot.is_file(), run.stderr[-2000:]
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (4000, 1280)
    assert float(pixels[..., :3].var()) > 1e-3


def test_every_image_loads(report, tmp_path):
    _, result = report
    run = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", result.html.resolve().as_uri())
    body = re.search(r"<body[^>]*>", run.stdout)
    assert body, run.stderr[-2000:]
    ok = re.search(r'data-images-ok="(\d+)"', body.group(0))
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    assert ok and total, body.group(0)
    assert int(total.group(1)) == len(FIGURE_NAMES) == int(ok.group(1))
