"""Throwaway TLS material for loopback servers: a trustme CA and one server certificate for every loopback
name the tests and the demo use, written as PEM files."""

from __future__ import annotations

import atexit
import shutil
import ssl
import tempfile
from pathlib import Path

from crawler.demo.extra import require_demo_extra

__all__ = ["CERT_NAMES", "TlsFiles", "tls_files"]

# Every name the server certificate is valid for: tests use several loopback hosts as distinct hosts.
CERT_NAMES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost", "::1")


class TlsFiles:
    """A trustme CA (`ca_path`) and a server certificate chain (`cert_path`, `key_path`) under `directory`."""

    def __init__(self, directory: Path) -> None:
        require_demo_extra("trustme")
        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="crawler loopback servers")
        cert = ca.issue_cert(*CERT_NAMES)
        self.directory = directory
        self.ca_path = directory / "ca.pem"
        self.cert_path = directory / "server.pem"
        self.key_path = directory / "server.key"
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert.cert_chain_pems[0].write_to_path(str(self.cert_path))
        for intermediate in cert.cert_chain_pems[1:]:
            intermediate.write_to_path(str(self.cert_path), append=True)
        cert.private_key_pem.write_to_path(str(self.key_path))

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting this CA (httpx 0.28 deprecates `verify=<path>`)."""
        return ssl.create_default_context(cafile=str(self.ca_path))


_shared: TlsFiles | None = None


def tls_files(directory: str | Path | None = None) -> TlsFiles:
    """TLS material for a server. Without a directory, one CA per process shared by every server, so a
    single `http.verify` path trusts all of them (removed when the process exits)."""
    global _shared
    if directory is not None:
        return TlsFiles(Path(directory))
    if _shared is None:
        tmp = Path(tempfile.mkdtemp(prefix="crawler-tls-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        _shared = TlsFiles(tmp)
    return _shared
