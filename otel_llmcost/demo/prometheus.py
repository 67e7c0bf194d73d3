"""A local Prometheus for the demo: the ``prometheus`` binary on the PATH, scraping the
demo's processor and app every second, so that the dashboards' queries can be run.

Used by ``otel-llmcost demo --prometheus`` and by the tests that run every dashboard
query against it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

SCRAPE_INTERVAL_S = 1


def available() -> bool:
    return shutil.which("prometheus") is not None


class LocalPrometheus:
    """``prometheus`` in ``directory`` (config, data, log), on a free loopback port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, targets: dict[str, str]) -> None:
        """Scrape ``targets`` (job name → host:port) every second."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("no prometheus binary on the PATH (Debian: apt install prometheus)")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            for job, target in targets.items())
        config.write_text(f"global:\n  scrape_interval: {SCRAPE_INTERVAL_S}s\n"
                          f"  evaluation_interval: {SCRAPE_INTERVAL_S}s\n"
                          f"scrape_configs:\n{jobs}")
        log = open(self.directory / "prometheus.log", "wb")
        self._process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--enable-feature=exemplar-storage"],
            stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start: see {self.directory}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; the ``data`` of a successful answer (else an error)."""
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as response:
            answer = json.loads(response.read())
        if answer.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {answer}")
        return answer["data"]


def free_port() -> int:
    """A free TCP port on loopback (for a server about to bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
