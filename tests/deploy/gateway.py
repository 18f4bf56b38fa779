"""Run deploy/nginx/gateway.conf with Debian's nginx on this machine, as the gateway image runs it.

The image (nginx-unprivileged) includes the file from its own nginx.conf inside `http {}`; MAIN_CONF
below is that nginx.conf with paths under a temporary prefix. The committed file names what exists
in the image and in Compose/Kubernetes (its listen port, `evaluation-api:8000`, the web root, the
log path); `site_config` replaces exactly those, each of which must occur exactly once.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.utils import servers

ROOT = servers.ROOT
GATEWAY_CONF = ROOT / "deploy" / "nginx" / "gateway.conf"
# The image's entrypoint: writes the per-client limits it is given into a copy of the config.
ENTRYPOINT = ROOT / "deploy" / "nginx" / "gateway-entrypoint.sh"
FRONTEND = ROOT / "frontend"

# As in nginx-unprivileged's /etc/nginx/nginx.conf, with its /tmp and /var/log paths under PREFIX.
MAIN_CONF = """\
worker_processes 1;
error_log {prefix}/error.log notice;
pid {prefix}/nginx.pid;
events {{
    worker_connections 256;
}}
http {{
    proxy_temp_path {prefix}/proxy_temp;
    client_body_temp_path {prefix}/client_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 65;
    include {prefix}/conf.d/*.conf;
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError("nginx is not installed: `make system-deps` installs Debian's nginx-light")
    return found


def site_config(*, port: int, api_address: str, html_dir: Path, access_log: Path) -> str:
    text = GATEWAY_CONF.read_text(encoding="utf-8")
    replacements = {
        "listen 8080;": f"listen 127.0.0.1:{port};",
        "server evaluation-api:8000;": f"server {api_address};",
        "root /usr/share/nginx/html;": f"root {html_dir};",
        "access_log /var/log/nginx/access.log gateway;": f"access_log {access_log} gateway;",
    }
    for old, new in replacements.items():
        count = text.count(old)
        assert count == 1, (
            f"{GATEWAY_CONF.name} should say {old!r} exactly once (found {count}): update tests/deploy/gateway.py"
        )
        text = text.replace(old, new)
    return text


class GatewayDir:
    """A prefix with nginx.conf, conf.d/ and a copy of frontend/ as the web root.

    Under /tmp with mode 0755, not under pytest's tmp_path (0700): when the tests run as root, the
    nginx workers run as `nobody` and must be able to read the files.
    """

    def __init__(self, *, port: int, api_address: str, extra_confs: dict[str, str] | None = None) -> None:
        self.port = port
        self.prefix = Path(tempfile.mkdtemp(prefix="gateway-"))
        self.prefix.chmod(0o755)
        shutil.copytree(FRONTEND, self.prefix / "html")
        confd = self.prefix / "conf.d"
        confd.mkdir()
        (confd / "default.conf").write_text(
            site_config(
                port=port, api_address=api_address, html_dir=self.prefix / "html", access_log=self.prefix / "access.log"
            ),
            encoding="utf-8",
        )
        for name, text in (extra_confs or {}).items():
            (confd / name).write_text(text, encoding="utf-8")
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(MAIN_CONF.format(prefix=self.prefix), encoding="utf-8")

    def base_args(self) -> list[str]:
        return [nginx_binary(), "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.prefix / "error.log")]

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t`: parses the whole configuration and opens what it names."""
        return subprocess.run([*self.base_args(), "-t"], capture_output=True, text=True, timeout=30, check=False)

    def server(self) -> servers.Server:
        """nginx in the foreground, to be start()ed and stop()ped. Its messages go to error.log
        (error_log(), since -e names it before the config is read)."""
        return servers.Server(
            name="gateway (nginx)",
            args=[*self.base_args(), "-g", "daemon off;"],
            port=self.port,
            ready_path="/healthz",
            env=servers.project_env(),
        )

    def entrypoint_env(self, **limits: str) -> dict[str, str]:
        """The environment of the image's entrypoint run on this prefix: its nginx directory is the
        prefix (nginx.conf, conf.d/), the copy it writes goes under run/; `limits` are its settings
        (GATEWAY_RATE_LIMIT_RPS=..., ...)."""
        return {
            **servers.project_env(),
            "GATEWAY_NGINX_DIR": str(self.prefix),
            "GATEWAY_RUN_DIR": str(self.run_dir),
            **limits,
        }

    @property
    def run_dir(self) -> Path:
        return self.prefix / "run"

    def entrypoint_args(self, *nginx_args: str, **limits: str) -> list[str]:
        """The image's entrypoint running nginx as the image's command does. The image's nginx reads
        /etc/nginx/nginx.conf by default, this machine's would read its own: with no limit set,
        `-c` names the prefix's (the entrypoint runs the command as given); with one set, the
        entrypoint names its copy itself."""
        conf = [] if any(limits.values()) else ["-c", str(self.conf)]
        return [
            "sh",
            str(ENTRYPOINT),
            nginx_binary(),
            "-p",
            str(self.prefix),
            *conf,
            "-e",
            str(self.prefix / "error.log"),
            *nginx_args,
        ]

    def run_entrypoint(self, *nginx_args: str, **limits: str) -> subprocess.CompletedProcess[str]:
        """The entrypoint with a command that exits (`-t`, `-T`)."""
        return subprocess.run(
            self.entrypoint_args(*nginx_args, **limits),
            env=self.entrypoint_env(**limits),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def entrypoint_server(self, **limits: str) -> servers.Server:
        """nginx in the foreground, started by the image's entrypoint with those limits."""
        return servers.Server(
            name="gateway (nginx, through its entrypoint)",
            args=self.entrypoint_args("-g", "daemon off;", **limits),
            port=self.port,
            ready_path="/healthz",
            env=self.entrypoint_env(**limits),
        )

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def remove(self) -> None:
        shutil.rmtree(self.prefix, ignore_errors=True)
