"""nginx from Debian's packages serving the benchmark site on loopback: HTTP/1.1 cleartext, HTTP/2 cleartext
with prior knowledge (h2c), and HTTP/2 over TLS (ALPN h2, http/1.1; certificates from trustme).

One worker process (`worker_processes 1`): the machine has 2 cores, one for the server and one for the
client under test. Runs as a non-daemon child with its config, logs and pid under a work directory;
`server_cpu_seconds()` reads the CPU time nginx has used so far from /proc, so a run can report it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from types import TracebackType

from crawler.demo.launcher import free_port, wait_listening
from crawler.demo.tls import TlsFiles

__all__ = ["Nginx", "ensure_nginx", "find_nginx", "nginx_version"]

_START_TIMEOUT = 20.0


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def ensure_nginx(log: object = print) -> str:
    """The nginx binary; installs Debian's `nginx` package with apt-get when there is none (and says so)."""
    exe = find_nginx()
    if exe is not None:
        return exe
    say = log if callable(log) else print
    say("nginx is not installed: installing Debian's nginx package (apt-get install -y nginx-light)")
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("nginx is not installed and apt-get is not available: install nginx and rerun")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, apt, "update", "-q"], check=False, env=env)
    for pkg in ("nginx-light", "nginx"):
        if subprocess.run([*sudo, apt, "install", "-y", "-q", pkg], env=env).returncode == 0:
            break
    exe = find_nginx()
    if exe is None:
        raise RuntimeError("installing nginx with apt-get failed")
    return exe


def nginx_version(exe: str) -> tuple[int, int, int]:
    out = subprocess.run([exe, "-v"], capture_output=True, text=True)
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (0, 0, 0)


def _proc_cpu(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Nginx:
    """nginx serving `www` on three loopback ports: `http_url`, `h2c_url` (prior knowledge), `https_url`."""

    def __init__(self, www: str | Path, workdir: str | Path, *, log: object = print) -> None:
        self.www = Path(www).resolve()
        self.dir = Path(workdir).resolve()
        self.exe = ensure_nginx(log)
        self.version = nginx_version(self.exe)
        self.http_port = free_port()
        self.h2c_port = free_port()
        self.https_port = free_port()
        self.ca_path = self.dir / "ca.pem"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def h2c_url(self) -> str:
        return f"http://127.0.0.1:{self.h2c_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def version_text(self) -> str:
        return "nginx " + ".".join(map(str, self.version))

    def _write_tls(self) -> None:
        # ca.pem, server.pem (the certificate chain) and server.key in the work directory.
        TlsFiles(self.dir)

    def _config(self) -> str:
        # `listen ... http2` is how nginx before 1.25.1 turns HTTP/2 on; later versions use `http2 on;`.
        new_style = self.version >= (1, 25, 1)
        h2c_listen = (
            f"listen 127.0.0.1:{self.h2c_port};" if new_style else f"listen 127.0.0.1:{self.h2c_port} http2;"
        )
        tls_listen = (f"listen 127.0.0.1:{self.https_port} ssl;" if new_style
                      else f"listen 127.0.0.1:{self.https_port} ssl http2;")  # fmt: skip
        h2_on = "http2 on;" if new_style else ""
        user = "user root;" if os.geteuid() == 0 else ""  # the work directory may not be readable by nobody
        d = self.dir
        return textwrap.dedent(f"""
            {user}
            worker_processes 1;
            error_log {d}/error.log warn;
            pid {d}/nginx.pid;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                sendfile on;
                tcp_nopush on;
                tcp_nodelay on;
                keepalive_timeout 120;
                keepalive_requests 10000000;
                open_file_cache max=20000 inactive=120s;
                open_file_cache_valid 120s;
                client_body_temp_path {d}/tmp_body;
                proxy_temp_path {d}/tmp_proxy;
                fastcgi_temp_path {d}/tmp_fcgi;
                uwsgi_temp_path {d}/tmp_uwsgi;
                scgi_temp_path {d}/tmp_scgi;
                types {{ text/html html; text/plain txt; application/octet-stream bin; }}
                default_type application/octet-stream;
                http2_max_concurrent_streams 256;
                server {{
                    listen 127.0.0.1:{self.http_port};
                    root {self.www};
                }}
                server {{
                    {h2c_listen}
                    {h2_on}
                    root {self.www};
                }}
                server {{
                    {tls_listen}
                    {h2_on}
                    ssl_certificate {d}/server.pem;
                    ssl_certificate_key {d}/server.key;
                    ssl_protocols TLSv1.2 TLSv1.3;
                    ssl_session_cache shared:SSL:10m;
                    root {self.www};
                }}
            }}
        """)

    def start(self) -> Nginx:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_tls()
        conf = self.dir / "nginx.conf"
        conf.write_text(self._config())
        with open(self.dir / "stderr.log", "wb") as err:
            self._proc = subprocess.Popen(
                [self.exe, "-p", str(self.dir), "-c", str(conf), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        for port in (self.http_port, self.h2c_port, self.https_port):
            try:
                wait_listening("127.0.0.1", port, self._proc, _START_TIMEOUT)
            except RuntimeError as exc:
                raise RuntimeError(f"nginx: {exc}: {(self.dir / 'error.log').read_text(errors='replace')[-2000:]}"
                                   f"{(self.dir / 'stderr.log').read_text(errors='replace')[-2000:]}") from None  # fmt: skip
        return self

    def server_cpu_seconds(self) -> float:
        """CPU seconds used so far by the nginx master and its workers."""
        if self._proc is None:
            return 0.0
        pid = self._proc.pid
        return _proc_cpu(pid) + sum(_proc_cpu(c) for c in _children(pid))

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
