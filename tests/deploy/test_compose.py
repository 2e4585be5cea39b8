"""docker-compose.yml, .env.example and the Dockerfile, checked as files (no Docker here).

Variables are substituted the way Compose does (``${VAR}``, ``${VAR:-default}``,
``${VAR:?message}``, ``$$`` for a literal ``$``) with the values from ``.env.example``, so
the structure is checked as ``docker compose config`` would see it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

INFRA = ("postgres", "redis", "qdrant")
WORKERS = ("worker", "worker-gpu")
SECRETS = ("POSTGRES_PASSWORD",)
_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")


def _env_example() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            env[m[1]] = m[2]
    return env


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        name, op, arg = m[1], m[2], m[3]
        have = env.get(name)
        if op and op.startswith(":") and have == "":
            have = None
        if have is not None:
            return have
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op in (":-", "-") else ""

    return _VAR.sub(sub, value)


def _compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return _interpolate(raw, _env_example() if env is None else env)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _compose()


def test_services_exist(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {*INFRA, "migrate", *WORKERS}


@pytest.mark.parametrize("name", INFRA)
def test_infrastructure_has_healthcheck_and_pinned_image(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1
    image, _, tag = service["image"].rpartition(":")
    assert image and tag != "latest" and re.search(r"\d+\.\d+", tag), service["image"]


def test_no_image_is_latest_or_untagged(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "image" in service:
            _, sep, tag = service["image"].rpartition(":")
            assert sep and tag and tag != "latest", f"{name}: {service['image']}"


def test_named_volumes_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for vol in service.get("volumes", []):
            source = vol["source"] if isinstance(vol, dict) else vol.split(":")[0]
            kind = vol.get("type", "volume") if isinstance(vol, dict) else None
            if kind == "bind" or source.startswith(("/", ".", "~")):
                continue
            assert source in declared, f"{name} uses undeclared volume {source!r}"
            used.add(source)
    assert declared == used
    assert {"postgres_data", "redis_data", "qdrant_data", "models"} <= declared


def test_migrate_runs_db_upgrade_once_postgres_is_healthy(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["build"] == "."


@pytest.mark.parametrize("name", WORKERS)
def test_workers(compose: dict[str, Any], name: str) -> None:
    worker = compose["services"][name]
    assert worker["build"] == "."
    assert worker["command"][:2] == ["worker", "--queues"]
    assert set(worker["command"][2].split(",")) == {"gpu", "cpu"}
    deps = worker["depends_on"]
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert all(deps[s]["condition"] == "service_healthy" for s in INFRA)
    env = worker["environment"]
    assert env["EMBPLAT_CATALOG_URL"].startswith("postgresql+psycopg://")
    assert env["EMBPLAT_BROKER_URL"].startswith("redis://redis:")
    assert env["EMBPLAT_QDRANT_URL"] == "http://qdrant:6333"
    binds = [v for v in worker["volumes"] if isinstance(v, dict) and v["type"] == "bind"]
    data_dir = _env_example()["EMBPLAT_DATA_DIR"]
    assert binds == [{"type": "bind", "source": data_dir, "target": data_dir, "read_only": True}]
    assert "models:/models" in worker["volumes"]


def test_gpu_profile_reserves_nvidia_device(compose: dict[str, Any]) -> None:
    gpu, cpu = compose["services"]["worker-gpu"], compose["services"]["worker"]
    assert gpu["profiles"] == ["gpu"] and "profiles" not in cpu
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"]["EMBPLAT_EMBED_DEVICE"] == "cuda"
    assert cpu["environment"]["EMBPLAT_EMBED_DEVICE"] == "cpu"
    assert "deploy" not in cpu


def test_required_secrets_use_error_form() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for name in SECRETS:
        uses = re.findall(rf"\$\{{{name}([^}}]*)\}}", text)
        assert uses and all(u.startswith(":?") for u in uses), (name, uses)
        env = {k: v for k, v in _env_example().items() if k != name}
        with pytest.raises(KeyError, match=name):
            _compose(env)


def test_env_example_lists_every_variable() -> None:
    referenced = {m[1] for m in _VAR.finditer(COMPOSE.read_text(encoding="utf-8")) if m[1]}
    assert referenced - set(_env_example()) == set()
    assert set(SECRETS) <= referenced


def test_dockerfile_pinned_nonroot_platform_entrypoint() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^ENTRYPOINT \[\"platform\"\]$", text, re.M)
    assert "pip install" in text and "torch" in text


def test_flower_is_pinned_local_and_behind_a_profile(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    image, _, tag = flower["image"].rpartition(":")
    assert image == "mher/flower" and re.fullmatch(r"\d+\.\d+(\.\d+)?", tag)
    assert flower["profiles"] == ["ops"]
    assert "--broker=redis://redis:6379/0" in flower["command"]
    assert flower["depends_on"]["redis"]["condition"] == "service_healthy"
    assert all(p.startswith("127.0.0.1:") for p in flower["ports"])


@pytest.mark.parametrize("name", WORKERS)
def test_workers_have_a_ping_healthcheck(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name]["healthcheck"]
    assert check["test"] == ["CMD", "platform", "worker", "--ping"]
    assert int(check["timeout"].rstrip("s")) < int(check["interval"].rstrip("s"))


def test_compose_time_limits_pass_the_settings_validation() -> None:
    """The workers' visibility timeout and training limits, as .env.example sets them,
    are accepted by Settings (hard limit below the visibility timeout, soft below hard)."""
    from embplat.config import CelerySettings

    env = _compose()["services"]["worker"]["environment"]
    celery = {k: v for k, v in env.items() if k.startswith("EMBPLAT_CELERY_")}
    assert set(celery) >= {
        "EMBPLAT_CELERY_VISIBILITY_TIMEOUT",
        "EMBPLAT_CELERY_TRAIN_TIME_LIMIT",
        "EMBPLAT_CELERY_TRAIN_SOFT_TIME_LIMIT",
    }
    fields = {k.removeprefix("EMBPLAT_CELERY_").lower(): int(v) for k, v in celery.items()}
    settings = CelerySettings(**fields)
    assert settings.train_time_limit < settings.visibility_timeout


WORKFLOW = ROOT / ".github" / "workflows" / "services.yml"


def test_services_workflow_runs_against_real_servers() -> None:
    flow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    (job,) = flow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    services = job["services"]
    assert set(services) == {"postgres", "redis", "qdrant"}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert re.fullmatch(r"qdrant/qdrant:v1\.\d+\.\d+", services["qdrant"]["image"])
    for name, service in services.items():
        assert "--health-cmd" in service["options"], name
        assert service["ports"], name
    assert job["env"]["EMBPLAT_TEST_QDRANT_URL"] == "http://localhost:6333"
    runs = [step.get("run", "") for step in job["steps"]]
    assert "make install" in runs
    assert any("pytest -m services" in run for run in runs)
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["python-version"] == "3.11"


def test_workflow_qdrant_matches_the_client_pin() -> None:
    """qdrant-client warns unless the server's major version matches and its minor version
    is within one of the client's: the workflow's server follows the pinned client."""
    pin = re.search(r'"qdrant-client==(\d+)\.(\d+)\.\d+"', (ROOT / "pyproject.toml").read_text())
    assert pin
    flow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    (job,) = flow["jobs"].values()
    tag = job["services"]["qdrant"]["image"].rpartition(":v")[2]
    major, minor = (int(x) for x in tag.split(".")[:2])
    assert major == int(pin[1]) and abs(minor - int(pin[2])) <= 1
