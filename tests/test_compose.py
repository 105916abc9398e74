"""docker-compose.yml wiring, checked without Docker: images, settings, secrets, dependencies, Temporal setup, the API
replicas behind HAProxy and its readiness checks, graceful stops, and what Prometheus scrapes and Grafana shows.

Variables are interpolated the way compose does it (`${X:-default}`, `${X:?message}`, `$$`), so the checks see
what the containers would see.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices

from models.settings import Settings, get_settings
from workflows.types import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APIS = ("api-1", "api-2")
WORKERS = ("worker-1", "worker-2")
APP_SERVICES = (*APIS, *WORKERS)
# Settings that only configure the embedded dev server `make run` starts; compose points TEMPORAL_ADDRESS at its
# own Temporal server instead.
EMBEDDED_ONLY = {"TEMPORAL_PORT", "TEMPORAL_UI_PORT", "TEMPORAL_HTTP_PORT", "TEMPORAL_METRICS_PORT"}
REQUIRED = {
    "STAGEFLOW_API_KEY", "POSTGRES_PASSWORD", "TEMPORAL_POSTGRES_PASSWORD", "SMTP_HOST", "SMTP_FROM",
    "GRAFANA_ADMIN_PASSWORD",
}
GIVEN = {
    "STAGEFLOW_API_KEY": "k" * 40,
    "POSTGRES_PASSWORD": "app-db-secret",
    "TEMPORAL_POSTGRES_PASSWORD": "temporal-db-secret",
    "SMTP_HOST": "smtp.example.com",
    "SMTP_FROM": "crm@example.com",
    "GRAFANA_ADMIN_PASSWORD": "grafana-secret",
}

_VAR = re.compile(
    r"\$\$"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>(?:[^{}]|\{[^{}]*\})*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariable(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation over a loaded YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in ("?", ":?") and unset:
            raise MissingVariable(name, arg)
        if op in ("-", ":-") and unset:
            return interpolate(arg, env)
        return current or ""

    return _VAR.sub(substitute, value)


def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def resolved_compose(env: dict[str, str] | None = None) -> dict:
    return interpolate(raw_compose(), GIVEN if env is None else env)


def settings_env_names() -> set[str]:
    names: set[str] = set()
    prefix = Settings.model_config.get("env_prefix", "")
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def test_every_image_is_pinned_to_a_version():
    services = resolved_compose()["services"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in services.items():
        assert "image" in service, f"service {name} names no image"
        tag = image_tag(service["image"])
        assert tag and tag != "latest", f"service {name}: image {service['image']} is not pinned to a version"
        if "build" in service:
            assert service["image"] == f"stageflow:{version}", f"service {name} builds stageflow {version}"
    base = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert base, "the Dockerfile has no FROM line"
    for image in base:
        tag = image_tag(image)
        assert tag and tag != "latest" and tag[0].isdigit(), f"Dockerfile base {image} is not pinned to a version"


def test_temporal_images_move_together():
    services = resolved_compose()["services"]
    server = image_tag(services["temporal"]["image"])
    assert services["temporal"]["image"].startswith("temporalio/server:")
    for name, service in services.items():
        if service["image"].startswith("temporalio/admin-tools:"):
            assert image_tag(service["image"]) == server, f"{name} runs admin-tools of another version than the server"
    assert not any("auto-setup" in s["image"] for s in services.values()), "temporalio/auto-setup is deprecated"


def test_api_and_worker_get_every_setting_the_code_reads():
    services = raw_compose()["services"]
    wanted = settings_env_names() - EMBEDDED_ONLY
    assert "STAGEFLOW_API_KEY" in wanted and "DATABASE_URL" in wanted  # the names are read off Settings
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        missing = wanted - set(environment)
        assert not missing, f"{name} does not set {sorted(missing)}"
        unknown = set(environment) - settings_env_names()
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"
    assert all(services[name]["environment"] == services["api-1"]["environment"] for name in APP_SERVICES)


def test_the_resolved_environment_is_valid_settings(monkeypatch):
    environment = resolved_compose()["services"]["api-1"]["environment"]
    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        if value is not None:
            monkeypatch.setenv(name, str(value))
    settings = get_settings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == GIVEN["STAGEFLOW_API_KEY"]
    assert settings.effective_database_url == (
        f"postgresql+psycopg://stageflow:{GIVEN['POSTGRES_PASSWORD']}@postgresql:5432/stageflow"
    )
    assert settings.effective_temporal_address == "temporal:7233"
    assert settings.smtp_host == GIVEN["SMTP_HOST"] and settings.smtp_from == GIVEN["SMTP_FROM"]
    assert settings.allow_private_urls is False
    assert str(settings.data_dir) == "/data"


def test_secrets_fail_fast_when_unset():
    missing: set[str] = set()
    env: dict[str, str] = {}
    for _ in range(len(REQUIRED) + 1):
        try:
            resolved_compose(env)
            break
        except MissingVariable as exc:
            assert exc.message.strip(), f"${{{exc.name}:?}} needs a message saying what to set"
            missing.add(exc.name)
            env[exc.name] = "x"
    assert missing == REQUIRED
    for name in REQUIRED:
        with pytest.raises(MissingVariable) as caught:
            resolved_compose({k: v for k, v in GIVEN.items() if k != name})
        assert caught.value.name == name
    text = COMPOSE.read_text()
    for match in re.finditer(r"\$\{([A-Z0-9_]*(?:PASSWORD|API_KEY|SECRET)[A-Z0-9_]*)([^}]*)\}", text):
        assert match.group(2).startswith(":?"), f"${{{match.group(1)}{match.group(2)}}} must fail fast with :?"
    for name, service in raw_compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|PWD|API_KEY|SECRET", key) and value is not None:
                assert str(value).startswith("${") and ":?" in str(value), f"{name}.{key} holds a literal secret"


def test_dependencies_exist_and_their_conditions_can_be_met():
    services = resolved_compose()["services"]
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy; it has no check"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") not in ("always", "unless-stopped"), (
                    f"{name} waits for one-shot {target} to complete, but it restarts forever")
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"
    for name in APP_SERVICES:
        deps = depends_on(services[name])
        assert deps.get("postgresql") == "service_healthy", f"{name} starts before its database is ready"
        assert deps.get("temporal-create-namespace") == "service_completed_successfully", (
            f"{name} starts before the namespace and search attributes exist")
    for name in APIS:
        assert "/health" in " ".join(services[name]["healthcheck"]["test"])
    assert depends_on(services["api-2"]).get("api-1") == "service_healthy", "the replicas create tables one at a time"
    for name in WORKERS:
        assert depends_on(services[name]).get("api-1") == "service_healthy", f"{name} creates tables beside an API"


def test_databases_are_separate_and_wired():
    services = resolved_compose()["services"]
    app_db = services["postgresql"]["environment"]
    assert services["postgresql"]["image"].startswith("postgres:16")
    url = services["api-1"]["environment"]["DATABASE_URL"]
    assert url == (
        f"postgresql+psycopg://{app_db['POSTGRES_USER']}:{app_db['POSTGRES_PASSWORD']}@postgresql:5432/"
        f"{app_db['POSTGRES_DB']}"
    )
    temporal = services["temporal"]["environment"]
    assert temporal["POSTGRES_SEEDS"] == "temporal-postgresql"
    assert services["temporal-postgresql"]["image"].startswith("postgres:")
    assert temporal["POSTGRES_PWD"] == services["temporal-postgresql"]["environment"]["POSTGRES_PASSWORD"]
    assert temporal["POSTGRES_PWD"] != app_db["POSTGRES_PASSWORD"]
    schema_job = " ".join(services["temporal-admin-tools"]["command"])
    for part in ("temporal-sql-tool", "setup-schema", "update-schema", "temporal_visibility", "--ep temporal-postgresql"):
        assert part in schema_job, f"the schema job does not run {part!r}"
    assert depends_on(services["temporal"]) == {"temporal-admin-tools": "service_completed_successfully"}


def test_app_and_ui_reach_the_temporal_service_and_attributes_are_registered():
    services = resolved_compose()["services"]
    for name in (*APP_SERVICES, "temporal-ui"):
        host, _, port = services[name]["environment"]["TEMPORAL_ADDRESS"].partition(":")
        assert host == "temporal" and port == "7233", f"{name} does not point at the temporal service"
    job = services["temporal-create-namespace"]
    script = " ".join(job["command"])
    namespace = services["api-1"]["environment"]["TEMPORAL_NAMESPACE"]
    assert job["environment"]["NAMESPACE"] == namespace
    assert "namespace create" in script
    for attribute in SEARCH_ATTRIBUTES:
        assert attribute in script, f"search attribute {attribute} is not registered"
    assert "search-attribute create" in script and "--type Keyword" in script
    assert depends_on(job) == {"temporal": "service_healthy"}


def test_app_services_share_the_data_volume_and_the_image_has_postgres_support():
    services = resolved_compose()["services"]
    data_dir = services["api-1"]["environment"]["STAGEFLOW_DATA_DIR"]
    mounts = {name: [v for v in services[name]["volumes"] if v.endswith(f":{data_dir}")] for name in APP_SERVICES}
    assert mounts["api-1"], "the API keeps its documents in the data volume"
    assert all(mounts[name] == mounts["api-1"] for name in APP_SERVICES), (
        "documents written by a worker must reach the APIs")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("psycopg[binary]") for dep in extras["postgres"])
    assert re.search(r"pip install [^\n]*\.\[postgres\]", DOCKERFILE.read_text())


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    configuration = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    undocumented = sorted(name for name in settings_env_names() if f"`{name}`" not in configuration)
    assert not undocumented, f"README's Configuration section does not list {undocumented}"


def duration_seconds(text: str) -> float:
    """A compose duration (`40s`, `1m30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(text))
    assert parts and "".join(number + unit for number, unit in parts) == str(text), f"not a duration: {text}"
    return sum(float(number) * units[unit] for number, unit in parts)


def mounted(service: dict, target: str) -> Path:
    """The file of this repository a service mounts at `target`."""
    for volume in service.get("volumes") or []:
        source, _, rest = volume.partition(":")
        if rest.split(":", 1)[0] == target and source.startswith("./"):
            return ROOT / source
    raise AssertionError(f"nothing of the repository is mounted at {target}")


def test_two_replicas_behind_haproxy_that_checks_readiness():
    services = resolved_compose()["services"]
    assert {*APP_SERVICES, "haproxy", "prometheus", "grafana"} <= set(services), sorted(services)
    assert "api" not in services and "worker" not in services
    haproxy = services["haproxy"]
    assert haproxy["image"].startswith("haproxy:")
    assert any(str(port).endswith(":8000") for port in haproxy["ports"]), "the load balancer is the published API port"
    for name in APIS:
        assert not services[name].get("ports"), f"{name} is reached through haproxy only"
        assert depends_on(haproxy).get(name) == "service_healthy"
    config = mounted(haproxy, "/usr/local/etc/haproxy/haproxy.cfg").read_text()
    lines = [line.split("#", 1)[0].strip() for line in config.splitlines()]
    assert "option httpchk" in lines and "http-check send meth GET uri /ready" in lines
    assert "http-check expect status 200" in lines
    for name in APIS:
        assert any(re.fullmatch(rf"server {name} {name}:8000 .*\bcheck\b.*", line) for line in lines), name
    assert any(line.startswith("http-request deny") and "/metrics" in line for line in lines), (
        "the API's metrics are for Prometheus on the compose network, not for the outside")


def test_apis_run_on_uvloop_and_httptools():
    """The API processes take uvloop's event loop and httptools' parser, as `make run` and the fault suite's
    cluster start them (which fails if either is missing)."""
    services = resolved_compose()["services"]
    cmd = re.search(r"^CMD\s+(\[.*\])", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert cmd
    commands = {name: services[name]["command"] for name in APIS} | {"Dockerfile": json.loads(cmd.group(1))}
    for name, command in commands.items():
        assert command[command.index("--loop") + 1] == "uvloop", name
        assert command[command.index("--http") + 1] == "httptools", name


def test_api_and_workers_stop_gracefully():
    services = resolved_compose()["services"]
    for name in APIS:
        command = services[name]["command"]
        assert command[0] == "uvicorn" and "--timeout-graceful-shutdown" in command, name
        grace = float(command[command.index("--timeout-graceful-shutdown") + 1])
        assert duration_seconds(services[name]["stop_grace_period"]) > grace, f"{name} is killed before it finishes"
    cmd = re.search(r"^CMD\s+(\[.*\])", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert cmd and "--timeout-graceful-shutdown" in cmd.group(1)
    for name in WORKERS:
        worker = services[name]
        assert worker["command"] == ["python", "worker.py"]
        shutdown = float(worker["environment"]["STAGEFLOW_WORKER_SHUTDOWN_SECONDS"])
        assert duration_seconds(worker["stop_grace_period"]) > shutdown, f"{name} is killed before its activities end"


def test_prometheus_scrapes_every_replica_and_worker_and_grafana_shows_them():
    services = resolved_compose()["services"]
    port = services["worker-1"]["environment"]["STAGEFLOW_WORKER_METRICS_PORT"]
    assert port and int(port) > 0
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    scrape = yaml.safe_load(mounted(prometheus, "/etc/prometheus/prometheus.yml").read_text())["scrape_configs"]
    targets = {
        job["job_name"]: {target for group in job["static_configs"] for target in group["targets"]} for job in scrape
    }
    assert targets["stageflow-api"] == {f"{name}:8000" for name in APIS}
    assert targets["stageflow-worker"] == {f"{name}:{port}" for name in WORKERS}
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in scrape)

    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    provisioning = mounted(grafana, "/etc/grafana/provisioning")
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == "prometheus"
    provider = yaml.safe_load((provisioning / "dashboards" / "stageflow.yml").read_text())["providers"][0]
    folder = provider["options"]["path"]
    dashboard_file = mounted(grafana, f"{folder}/stageflow-dashboard.json")
    assert dashboard_file == ROOT / "deploy" / "grafana" / "stageflow-dashboard.json"
    dashboard = json.loads(dashboard_file.read_text())
    queries = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
        if target.get("datasource", {}).get("uid") == source["uid"]
    )
    for metric in ("stageflow_http_requests_total", "stageflow_http_request_duration_seconds_bucket",
                   "stageflow_rules_total", "stageflow_rule_lateness_seconds_bucket", "stageflow_trigger_matches_total",
                   "temporal_workflow_task_schedule_to_start_latency_bucket",
                   "temporal_activity_schedule_to_start_latency_bucket", "temporal_worker_task_slots_used"):
        assert metric in queries, f"no panel of the dashboard shows {metric}"
    assert "histogram_quantile(0.99" in queries and "histogram_quantile(0.5" in queries
