"""The Docker image: built from this checkout, run with no network at all, its own HEALTHCHECK
(/healthz) passes while /readyz says the platform is not connected; it runs as a non-root user
and keeps its database on the /data volume. Skipped, saying why, where no Docker daemon answers
(the docker CLI alone is not enough)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 900
HEALTHY_WITHIN_S = 90.0


def _docker_missing() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on this machine"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer within 30 s"
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return f"no Docker daemon reachable ({lines[-1] if lines else 'docker info failed'})"
    return None


MISSING = _docker_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def docker(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"docker {args[0]} failed: {done.stderr[-2000:]}"
    return done.stdout.strip()


@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_the_image_runs_as_a_user_keeps_data_on_the_volume_and_answers_healthz() -> None:
    image = f"gptsbot-test:{uuid.uuid4().hex[:12]}"
    docker("build", "--tag", image, str(ROOT), timeout=BUILD_TIMEOUT_S)
    container = ""
    try:
        container = docker(
            "run", "--detach", "--network", "none",
            # A token, so that `run` starts; with no network, Telegram is retried, not refused.
            "--env", "TELEGRAM_BOT_TOKEN=123456:not-a-real-token", "--env", "GPTS_API_KEY=sk-x",
            "--health-interval", "1s", "--health-start-period", "60s",
            image,
        )  # fmt: skip
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        while (health := docker("inspect", "--format", "{{json .State.Health}}", container)) and (
            json.loads(health)["Status"] != "healthy"
        ):
            assert docker("inspect", "--format", "{{.State.Running}}", container) == "true"
            assert time.monotonic() < deadline, docker("logs", container)
            time.sleep(1)
        ready = (
            "import urllib.request as r, urllib.error as e\n"
            "try: r.urlopen('http://127.0.0.1:9464/readyz', timeout=4)\n"
            "except e.HTTPError as x: print(x.code, x.read().decode())\n"
        )
        assert docker("exec", container, "python", "-c", ready) == (
            '503 {"ready": false, "not_ready": {"telegram": "not connected"}}'
        )
        assert docker("exec", container, "id", "-u") == "10001"
        assert "gptsbot.db" in docker("exec", container, "ls", "/data").split()
        docker("stop", "--time", "30", container, timeout=60)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", container) == "0"
    finally:
        if container:
            subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", "--force", image], capture_output=True, check=False)
