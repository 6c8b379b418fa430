"""A real Flower federation on loopback: one SuperLink and N SuperNodes as separate processes.

For the integration tests, the benchmark and trying the deployment on one machine. Every process
starts in its own session so it can be stopped as a process group; the SuperLink's helper
(`flower-superexec`, started in a session of its own) is found by its `--parent-pid` argument.
Flower state lives in a private FLWR_HOME, so nothing touches the user's ~/.flwr. The SuperNodes
share this host's cores: each gets `num-threads` = cores // SuperNodes (at least 1) in its node config.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent  # flower-superlink, flower-supernode and flwr beside this Python
CONNECTION = "local"
LOG_TAIL_CHARS = 2000  # how much of a process's log an error shows when it did not come up


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def threads_per_node(num_nodes: int) -> int:
    """A fair share of this host's cores for each of `num_nodes` SuperNodes (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // num_nodes)


class LocalFederation:
    """Start with `LocalFederation(n).start()`, run apps with `run`, always `stop()` (or use `with`).
    A federation in its own temporary folder (no `root` given) removes it on stop, unless it stops
    on an error: then the folder and its logs stay for a look (the error names it)."""

    def __init__(self, num_nodes: int, root: Path | None = None, node_configs: list[str] | None = None,
                 env: dict[str, str] | None = None):
        self.num_nodes = num_nodes
        self.owns_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="clfl", dir="/tmp"))  # short: socket paths
        threads = threads_per_node(num_nodes)
        self.node_configs = node_configs or [
            f"partition-id={i} num-partitions={num_nodes} num-threads={threads}" for i in range(num_nodes)]
        self.env = {**os.environ, **(env or {}), "FLWR_HOME": str(self.root / "home"),
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the SuperLink spawns flower-superexec
                    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "FLWR_DISABLE_UPDATE_CHECK": "1"}
        self.superlink: subprocess.Popen | None = None
        self.nodes: list[subprocess.Popen] = []
        self.port = 0

    def __enter__(self) -> "LocalFederation":
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        self.stop(keep_logs=exc_type is not None)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")
        return subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)

    def log_text(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def start(self, timeout: float = 60.0) -> "LocalFederation":
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        self.port, *node_ports = free_ports(self.num_nodes + 1)
        (self.root / "home" / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n')
        self.superlink = self._spawn("superlink", ["flower-superlink", "--insecure", "--host", "127.0.0.1",
                                                   "--port", str(self.port)])
        self._wait(lambda: self._healthy(), "superlink", self.superlink, timeout)
        for i, (port, node_config) in enumerate(zip(node_ports, self.node_configs)):
            self.nodes.append(self._spawn(f"supernode{i}", [
                "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{self.port}",
                "--port", str(port), "--node-config", node_config]))
        for i, node in enumerate(self.nodes):
            self._wait(lambda: "SuperNode ID" in self.log_text(f"supernode{i}"), f"supernode{i}", node, timeout)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def _wait(self, ready, name: str, proc: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop(keep_logs=True)
                raise RuntimeError(f"{name} did not come up (logs in {self.root}):\n"
                                   f"{self.log_text(name)[-LOG_TAIL_CHARS:]}")
            time.sleep(0.1)

    def flwr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "flwr"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def submit(self, app_dir: Path, run_config: str | None = None) -> int:
        """Start the app on the federation; returns the run id at once."""
        args = ["run", str(app_dir), CONNECTION, "--format", "json"]
        if run_config:
            args += ["--run-config", run_config]
        done = self.flwr(*args)
        try:
            return int(json.loads(done.stdout)["run-id"])
        except (ValueError, KeyError) as exc:
            raise RuntimeError(f"flwr run failed ({exc}): {done.stdout}\n{done.stderr}") from None

    def status(self, run_id: int) -> dict:
        """The run's row of `flwr ls` (keys include status, status-details)."""
        done = self.flwr("ls", CONNECTION, "--run-id", str(run_id), "--format", "json")
        return json.loads(done.stdout)["runs"][0]

    def wait(self, run_id: int, timeout: float = 600, poll: float = 1.0) -> dict:
        """Block until the run is finished; `flwr run` itself exits 0 even when the ServerApp fails,
        so success is read from the status (`finished:completed`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.status(run_id)
            if str(row.get("status", "")).startswith("finished:"):
                return row
            time.sleep(poll)
        raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f} s")

    def run(self, app_dir: Path, run_config: str | None = None, timeout: float = 600) -> dict:
        return self.wait(self.submit(app_dir, run_config), timeout)

    def kill_node(self, index: int) -> None:
        """kill -9 a SuperNode and everything it started (a machine that dies)."""
        _kill_groups(_groups([self.nodes[index].pid]), signal.SIGKILL)

    def pids(self) -> list[int]:
        """Every live process of the federation (for memory measurements)."""
        groups = set(_groups([p.pid for p in [self.superlink, *self.nodes] if p is not None]))
        return [pid for pid, pgid in _process_groups().items() if pgid in groups]

    def stop(self, keep_logs: bool = False) -> None:
        """Stop every process of the federation; remove its own temporary folder unless `keep_logs`."""
        roots = [p.pid for p in [self.superlink, *self.nodes] if p is not None]
        groups = _groups(roots)
        _kill_groups(groups, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(g in _process_groups().values() for g in groups):
            time.sleep(0.1)
        _kill_groups(groups, signal.SIGKILL)
        for p in [self.superlink, *self.nodes]:
            if p is not None:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        if self.owns_root and not keep_logs:
            shutil.rmtree(self.root, ignore_errors=True)


def _process_groups() -> dict[int, int]:
    """pid → process group id of every process (from /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[2])
            except (OSError, IndexError, ValueError):
                pass
    return out


def _groups(roots: list[int]) -> list[int]:
    """The roots' process groups plus those of their `--parent-pid` helpers (flower-superexec)."""
    groups = set(roots)
    table = _process_groups()
    for pid, pgid in table.items():
        try:
            args = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for flag, value in zip(args, args[1:]):
            if flag == b"--parent-pid" and value.isdigit() and int(value) in roots:
                groups.add(pgid)
    return sorted(groups)


def _kill_groups(ids: list[int], sig: int) -> None:
    for gid in ids:
        try:
            os.killpg(gid, sig)
        except (ProcessLookupError, PermissionError):
            pass
