"""docker-compose.yml parses with the real Compose binary and starts every process
with a real `pocketquant` command. (No Docker engine runs here, so nothing is started.)"""

import json
import subprocess
import sys
from pathlib import Path

from typer.main import get_command

from pocketquant.cli import app

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = Path(sys.executable).parent / "docker-compose"


def test_compose_file_is_valid_and_names_every_process() -> None:
    result = subprocess.run(
        [str(COMPOSE), "config", "--format", "json"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"mongo", "redis", "api", "worker", "stream"} <= set(services)
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]  # a click Group
    processes = {name: svc["command"] for name, svc in services.items() if svc["command"][0] == "pocketquant"}
    assert processes["api"] == ["pocketquant", "api"]
    assert processes["worker"] == ["pocketquant", "worker"]
    assert processes["stream"] == ["pocketquant", "stream"]
    for name, command in processes.items():
        assert command[1] in commands, f"{name} runs unknown command {command}"
        env = services[name]["environment"]
        assert env["MONGODB_URL"].startswith("mongodb://mongo:")
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert env["AUTH_REQUIRED"] == "true"  # production reads need a key
        assert services[name]["init"] is True  # SIGTERM reaches the process
        assert services[name]["stop_grace_period"] == "30s"
        assert set(services[name]["depends_on"]) == {"mongo", "redis"}
    for name in ("api", "worker", "stream"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    assert services["worker"]["healthcheck"]["test"][1:] == ["pocketquant", "health", "worker"]
    assert services["stream"]["healthcheck"]["test"][1:] == ["pocketquant", "health", "stream"]


def test_prometheus_scrapes_the_api_with_a_key() -> None:
    result = subprocess.run(
        [str(COMPOSE), "--profile", "monitoring", "config", "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    prometheus = json.loads(result.stdout)["services"]["prometheus"]
    mounted = {Path(v["source"]).name: v["target"] for v in prometheus["volumes"]}
    assert mounted["prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    config = (ROOT / "deploy" / "prometheus.yml").read_text()
    assert '- targets: ["api:8000"]' in config
    assert "metrics_path: /metrics" in config
    assert f"credentials_file: {mounted['metrics-key']}" in config
