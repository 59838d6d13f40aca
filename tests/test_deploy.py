"""deploy/: the image, compose file, systemd unit and proxies run the commands tested here.

There is no container engine on these machines, so the image is checked by doing what it does:
its entrypoint runs against the real `adherence-bot`, laid out as the Dockerfile lays it out.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from bot.config import Settings
from bot.devtools.bot_api_server import FakeBotApiServer, running_server
from bot.devtools.fake_telegram import FakeTelegram
from bot.migrate import current_revision, head_revision
from bot.paths import REPO_DIR

DEPLOY = REPO_DIR / "deploy"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
TOKEN = "123456:AAE-deploy_token"
DEADLINE = 30.0  # seconds for a real process to migrate, start polling or stop


# ---------------------------------------------------------------- reading the files


def dockerfile() -> list[tuple[str, str]]:
    """Returns the Dockerfile's instructions as (INSTRUCTION, arguments), continuations joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    steps = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            steps.append((instruction.upper(), args.strip()))
    return steps


def image_env() -> dict[str, str]:
    """Returns the variables the Dockerfile's ENV lines set."""
    env: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", args))
    return env


def image_cmd() -> list[str]:
    """Returns the image's CMD in exec form."""
    [cmd] = [json.loads(args) for instruction, args in dockerfile() if instruction == "CMD"]
    return list(cmd)


def workdir() -> str:
    """Returns the image's working directory."""
    [folder] = [args for instruction, args in dockerfile() if instruction == "WORKDIR"]
    return folder


def copies() -> list[tuple[list[str], str]]:
    """Returns each COPY as (sources, absolute destination inside the image)."""
    found = []
    for instruction, args in dockerfile():
        if instruction == "COPY":
            *sources, dest = [a for a in args.split() if not a.startswith("--")]
            where = str(PurePosixPath(workdir(), dest))  # an absolute dest stays as it is
            found.append((sources, where + "/" if dest.endswith("/") else where))
    return found


def compose() -> dict[str, Any]:
    """Returns deploy/compose.yaml as parsed YAML."""
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def bot_service() -> dict[str, Any]:
    """Returns the compose `bot` service."""
    bot = compose()["services"]["bot"]
    assert isinstance(bot, dict)
    return bot


def unit() -> dict[str, list[str]]:
    """Returns the systemd unit's settings, each key with every value it is given."""
    settings: dict[str, list[str]] = {}
    for line in (DEPLOY / "adherence-bot.service").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def installed_files(package: Path) -> list[Path]:
    """Returns what `pip install .` installs of one top-level package: every module (namespace
    packages too, as setuptools finds them) and the package data pyproject.toml declares."""
    setuptools = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools.get("package-data", {}).get(package.name, [])
    files = {*package.rglob("*.py"), *(p for pattern in patterns for p in package.glob(pattern))}
    return sorted(files)


def free_port() -> int:
    """Returns a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- Dockerfile


def test_image_installs_the_project_with_pip_without_dev_tools_and_runs_as_a_user() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    installs = [args for instruction, args in steps if "pip install" in args]
    assert len(installs) == 1
    assert re.search(r"pip install \.(\s|$)", installs[0]), installs[0]
    assert "[dev]" not in installs[0] and "-e" not in installs[0].split()
    users = [args for instruction, args in steps if instruction == "USER"]
    assert users and users[-1] not in {"root", "0"}
    instructions = [instruction for instruction, _ in steps]
    assert instructions.index("USER") > max(
        i for i, (instruction, args) in enumerate(steps) if "pip install" in args
    )


def test_image_copies_what_the_package_needs_and_never_secrets_or_data() -> None:
    sources = {source for found, _dest in copies() for source in found}
    assert {"pyproject.toml", "README.md", "bot", "handlers", "content"} <= sources
    assert not sources & {".", ".env", "data"}, "the image must never hold .env or data/"
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".env", "data/", ".venv/"} <= set(ignored)


def test_image_ends_in_the_entrypoint_that_migrates_then_runs() -> None:
    steps = dockerfile()
    assert steps[-1][0] == "CMD"
    [entry] = image_cmd()
    assert (["deploy/entrypoint.sh"], entry) in copies()
    script = ENTRYPOINT.read_text()
    assert script.startswith("#!/bin/sh\n") and "set -eu" in script
    upgrade = script.index("adherence-bot db upgrade")
    assert upgrade < script.index('exec adherence-bot run "$@"')


def test_entrypoint_is_valid_sh() -> None:
    done = subprocess.run(["sh", "-n", str(ENTRYPOINT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.access(ENTRYPOINT, os.X_OK)


# ---------------------------------------------------------------- entrypoint behaviour

STUB = """#!/bin/sh
# Stands in for adherence-bot: `db upgrade` fails $FAILS times with $FAIL_CODE, then works.
echo "$*" >> "$STUB_LOG"
if [ "$1" = db ]; then
    n=$(cat "$STUB_COUNT" 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "$n" > "$STUB_COUNT"
    if [ "$n" -le "$FAILS" ]; then exit "$FAIL_CODE"; fi
fi
exit 0
"""


@pytest.mark.parametrize(
    ("fails", "fail_code", "code", "calls"),
    [
        (0, 1, 0, ["db upgrade", "run --log-level DEBUG"]),
        (2, 1, 0, ["db upgrade"] * 3 + ["run --log-level DEBUG"]),
        (99, 1, 1, ["db upgrade"] * 4),  # gives up after DB_WAIT_TRIES
        (99, 2, 2, ["db upgrade"]),  # a setting to fix: no point in waiting
    ],
    ids=["ready", "ready-after-two-tries", "never-ready", "bad-setting"],
)
def test_entrypoint_waits_for_the_database_then_runs_the_bot(
    tmp_path: Path, fails: int, fail_code: int, code: int, calls: list[str]
) -> None:
    stub = tmp_path / "bin" / "adherence-bot"
    stub.parent.mkdir()
    stub.write_text(STUB)
    stub.chmod(0o755)
    env = {
        "PATH": f"{stub.parent}:/usr/bin:/bin",
        "STUB_LOG": str(tmp_path / "calls"),
        "STUB_COUNT": str(tmp_path / "count"),
        "FAILS": str(fails),
        "FAIL_CODE": str(fail_code),
        "DB_WAIT_TRIES": "4",
        "DB_WAIT_SECONDS": "0",
    }
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "--log-level", "DEBUG"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == code, done.stderr
    assert (tmp_path / "calls").read_text().splitlines() == calls


@pytest.fixture
def server() -> Iterator[FakeBotApiServer]:
    """A fake Bot API that knows the bot's token."""
    with running_server(FakeTelegram(valid_token=TOKEN, username="deploy_test_bot")) as s:
        yield s


def _lay_out_image(root: Path) -> tuple[Path, dict[str, str]]:
    """Copies the project as the Dockerfile does, installs it outside the source folder, and
    returns the working directory and the container's environment, with paths under `root`."""

    def inside(path: str) -> Path:
        return root / path.lstrip("/")

    app = inside(workdir())
    app.mkdir(parents=True)
    for sources, dest in copies():
        for source in sources:
            target = inside(dest) / Path(source).name if dest.endswith("/") else inside(dest)
            if (REPO_DIR / source).is_dir():
                shutil.copytree(REPO_DIR / source, target, ignore=shutil.ignore_patterns("__py*"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_DIR / source, target)
    # `pip install .` puts the packages in site-packages, away from content/ and data/.
    site = root / "site-packages"
    for package in ("bot", "handlers"):
        for path in installed_files(app / package):
            target = site / path.relative_to(app)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    (app / "data").mkdir()
    # The console script `pip install .` writes: it imports the installed package.
    scripts = root / "usr-local-bin"
    scripts.mkdir()
    script = scripts / "adherence-bot"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom bot.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    env = {
        name: re.sub(r"(?<![^:=/])/(app|tmp)\b", lambda m: str(inside(m.group(0))), value)
        for name, value in image_env().items()
    }
    env.update({"PATH": f"{scripts}:/usr/bin:/bin", "HOME": str(app), "PYTHONPATH": str(site)})
    return app, env


def test_image_entrypoint_migrates_and_runs_the_installed_bot_until_sigterm(
    tmp_path: Path, server: FakeBotApiServer
) -> None:
    app, env = _lay_out_image(tmp_path)
    env.update(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server.root_url,
            "EMERGENCY_NUMBER": "112",
            "PSEUDONYM_KEY": "deploy-pseudonym-key",
            "HEALTH_PORT": str(free_port()),
        }
    )
    # The bot must come from the installed copy, not from this checkout.
    probe = "import bot.paths as p; print(p.PACKAGE_DIR)"
    located = subprocess.run(
        [sys.executable, "-P", "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert located.stdout.strip() == str(tmp_path / "site-packages" / "bot"), located.stderr

    proc = subprocess.Popen(
        [str(tmp_path / image_cmd()[0].lstrip("/"))],
        cwd=app,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + DEADLINE
        while not server.fake.calls_to("getUpdates"):
            if proc.poll() is not None or time.monotonic() > end:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"the bot did not start polling ({proc.returncode}):\n{out}\n{err}")
            time.sleep(0.05)
        # compose.yaml's health check, run inside the "container", sees the bot healthy.
        check = list(bot_service()["healthcheck"]["test"])
        probe_health = [sys.executable, *check[2:]]
        while subprocess.run(probe_health, env=env, capture_output=True, timeout=30).returncode:
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail("the compose health check never passed")
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.index("Database is up to date") < out.index("running (long polling)")
    assert "Bot stopped." in out
    assert "Traceback" not in err
    database = f"sqlite:///{app / 'data' / 'adherence.db'}"
    assert current_revision(database) == head_revision()


# ---------------------------------------------------------------- compose.yaml


def test_compose_runs_the_bot_after_a_healthy_postgres() -> None:
    data = compose()
    services = data["services"]
    assert set(services) == {"db", "bot"}
    db = services["db"]
    assert str(db["image"]).startswith("postgres:16")
    volume = str(db["volumes"][0]).split(":")[0]
    assert volume in data["volumes"], "the database lives in a named volume"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "ports" not in db

    bot = bot_service()
    assert bot["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / ".." / "deploy/Dockerfile").is_file()
    assert bot["env_file"] == "../.env"
    assert bot["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert bot["restart"] == "unless-stopped"
    assert bot["command"] == image_cmd()
    assert "entrypoint" not in bot
    assert "ports" not in bot, "publish the webhook port only when it is used"


def test_compose_points_the_bot_at_the_db_service_with_its_credentials() -> None:
    environment = bot_service()["environment"]
    url = str(environment["DATABASE_URL"])
    db = compose()["services"]["db"]["environment"]
    match = re.fullmatch(r"postgresql://([^:]+):(.+)@db:5432/(\w+)", url)
    assert match, url
    assert match.group(1) == db["POSTGRES_USER"]
    assert match.group(2) == db["POSTGRES_PASSWORD"]
    assert match.group(3) == db["POSTGRES_DB"]
    assert environment["WEBHOOK_LISTEN"] == "0.0.0.0"
    assert "HEALTH_LISTEN" not in environment, "/healthz and /metrics stay inside the container"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        """Answers /healthz with the status under test, anything else with 404."""
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keeps the test output quiet."""


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_compose_healthcheck_fetches_healthz_on_health_port(status: int, healthy: bool) -> None:
    command = list(bot_service()["healthcheck"]["test"])
    assert command[:3] == ["CMD", "python", "-c"]
    assert "/healthz" in command[3] and "127.0.0.1" in command[3]

    handler = type("Health", (_Health,), {"status": status})
    httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "HEALTH_PORT": str(httpd.server_address[1])}
        done = subprocess.run(
            [sys.executable, *command[2:]], env=env, capture_output=True, timeout=30
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (done.returncode == 0) is healthy


# ---------------------------------------------------------------- systemd


def test_systemd_unit_migrates_then_runs_as_a_user_with_hardening() -> None:
    settings = unit()
    [start] = settings["ExecStart"]
    [pre] = settings["ExecStartPre"]
    assert start.endswith("/adherence-bot run")
    assert pre.endswith("/adherence-bot db upgrade")
    assert Path(start.split()[0]).parent == Path(pre.split()[0]).parent
    assert settings["User"][0] not in {"root", "0"}
    for key in ("WorkingDirectory", "EnvironmentFile"):
        assert settings[key][0].startswith("/")
    assert settings["Restart"] == ["on-failure"]
    assert settings["RestartPreventExitStatus"] == ["2"], "exit 2: a setting to fix, no loop"
    assert settings["NoNewPrivileges"] == ["true"]
    assert settings["ProtectSystem"] == ["strict"]
    defaults = dict(value.split("=", 1) for value in settings["Environment"])
    sqlite_folder = str(Path(defaults["DATABASE_URL"].removeprefix("sqlite:///")).parent)
    assert sqlite_folder in settings["ReadWritePaths"][0].split()


# ---------------------------------------------------------------- reverse proxies


def test_proxies_forward_only_the_webhook_path_to_the_webhook_port() -> None:
    port = Settings.model_fields["webhook_port"].default
    example = (REPO_DIR / ".env.example").read_text()
    path = re.search(r"^# WEBHOOK_URL=https://[^/\s]+(/\S*)$", example, flags=re.M)
    assert path, "the .env.example WEBHOOK_URL shows the webhook path"
    webhook = path.group(1)

    caddy = (DEPLOY / "Caddyfile").read_text()
    code = "\n".join(line.split("#")[0] for line in caddy.splitlines())
    assert re.findall(r"reverse_proxy\s+(\S+)", code) == [f"127.0.0.1:{port}"]
    # The one reverse_proxy sits in the webhook path's handle block.
    block = re.search(rf"handle {re.escape(webhook)} \{{((?:(?!handle).)*)", code, flags=re.S)
    assert block and "reverse_proxy" in block.group(1)

    nginx = (DEPLOY / "nginx.conf").read_text()
    code = "\n".join(line.split("#")[0] for line in nginx.splitlines())
    assert re.findall(r"proxy_pass\s+([^;]+);", code) == [f"http://127.0.0.1:{port}"]
    located = re.search(rf"location = {re.escape(webhook)} \{{(.*?)\n    \}}", code, flags=re.S)
    assert located and "proxy_pass" in located.group(1)
    assert "ssl_certificate " in code

    for text in (caddy, nginx):
        routes = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        assert not any("healthz" in line or "metrics" in line for line in routes)
