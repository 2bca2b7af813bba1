"""Run the tritonserver that ships inside PyPI's nvidia-pytriton wheel (2.51, Python backend only) on this machine.

The wheel's server folder is copied out once into the user cache with the Python 3.11 backend stub placed in
backends/python/; the server runs with the wheel's bundled libraries on LD_LIBRARY_PATH and this Python
environment's bin/ first on PATH, so the backend's stub imports ntc_export, NumPy and ONNX Runtime from here.

    python -m ntc_export.serving.tritonserver REPO [--http-port 8000] [--grpc-port 8001] [--config-name cpu]
"""

import argparse
import ctypes.util
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..util.errors import NtcError
from ..util.paths import cache_dir

STUB_PYTHON = "3.11"  # the stub links libpython3.11 (Debian's libpython3.11 package)
INSTALL_HINT = "pip install --no-deps nvidia-pytriton==0.7.0"


def _wheel_dirs() -> tuple[Path, Path]:
    """(tritonserver folder, bundled libraries folder) of the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise NtcError(f"tritonserver is not installed here: {INSTALL_HINT} (its numpy<2 pin is only for pytriton's "
                       "own Python API, which is not used)")
    package = Path(next(iter(spec.submodule_search_locations)))
    server, libs = package / "tritonserver", package.parent / "nvidia_pytriton.libs"
    if not (server / "bin" / "tritonserver").is_file() or not libs.is_dir():
        raise NtcError(f"{package}: no tritonserver binary in this pytriton install; {INSTALL_HINT}")
    return server, libs


def check_libpython() -> None:
    """The backend stub needs the shared libpython3.11 (Debian: apt-get install libpython3.11)."""
    if ctypes.util.find_library(f"python{STUB_PYTHON}") is None:
        raise NtcError(f"libpython{STUB_PYTHON}.so is missing: the Python backend stub cannot start "
                       f"(apt-get install libpython{STUB_PYTHON})")


def prepare_server() -> tuple[Path, Path]:
    """(server folder ready to run, libraries folder): the wheel's server copied once, stub in backends/python/."""
    check_libpython()
    server, libs = _wheel_dirs()
    stub = server / "python_backend_stubs" / STUB_PYTHON / "triton_python_backend_stub"
    if not stub.is_file():
        raise NtcError(f"{server}: no Python {STUB_PYTHON} backend stub in this pytriton wheel")
    ready = cache_dir("tritonserver") / f"pytriton-{server.stat().st_mtime_ns}"
    if not (ready / "backends" / "python" / stub.name).is_file():
        tmp = ready.with_name(f".{ready.name}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(server, tmp, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"))
        shutil.copy2(stub, tmp / "backends" / "python" / stub.name)
        try:
            os.replace(tmp, ready)  # another process may have finished first: then its copy is used
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return ready, libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(repo, server: Path, http_port: int, grpc_port: int, config_name: str | None) -> list[str]:
    cmd = [str(server / "bin" / "tritonserver"), f"--model-repository={Path(repo).resolve()}",
           f"--backend-directory={server / 'backends'}", f"--cache-directory={server / 'caches'}",
           "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", f"--http-port={http_port}",
           f"--grpc-port={grpc_port}", "--allow-metrics=false", "--exit-timeout-secs=5"]
    return cmd + ([f"--model-config-name={config_name}"] if config_name else [])


def server_env(libs: Path) -> dict:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH")]))
    # The stub finds its Python environment through the first python3 on PATH: this one, with ntc_export.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")  # one ONNX Runtime thread per backend instance on shared CPUs
    return env


class TritonServer:
    """A tritonserver on 127.0.0.1 with free ports, started with a bounded wait and always stopped (context manager).

    `log` collects the server's output (read it when a model fails to load)."""

    def __init__(self, repo, config_name: str | None = "cpu", start_timeout: float = 90.0, log_path=None):
        self.repo, self.config_name, self.start_timeout = Path(repo), config_name, start_timeout
        self.http_port = free_port()
        self.grpc_port = next(p for p in iter(free_port, None) if p != self.http_port)
        self.log_path = Path(log_path) if log_path else Path(self.repo).parent / f".{self.repo.name}.server.log"
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self) -> "TritonServer":
        server, libs = prepare_server()
        cmd = server_command(self.repo, server, self.http_port, self.grpc_port, self.config_name)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=server_env(libs),
                                            start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = "\n".join(self.log().splitlines()[-15:])
                self.stop()
                raise NtcError(f"tritonserver exited with {self.process.returncode} while starting:\n{tail}")
            if self._ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise NtcError(f"tritonserver not ready after {self.start_timeout:.0f} s (log: {self.log_path})")

    def stop(self) -> None:
        """SIGTERM to the server's process group (it and its backend stubs), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ntc_export.serving.tritonserver", description=__doc__.split("\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--config-name", default="cpu", help="configs/<name>.pbtxt of each model ('' for config.pbtxt)")
    parser.add_argument("--print-command", action="store_true", help="Print the environment and command, do not run.")
    args = parser.parse_args(argv)
    try:
        server, libs = prepare_server()
    except NtcError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cmd = server_command(args.repo, server, args.http_port, args.grpc_port, args.config_name or None)
    env = server_env(libs)
    if args.print_command:
        print(f"PATH={Path(sys.executable).parent}:$PATH LD_LIBRARY_PATH={libs} {' '.join(cmd)}")
        return 0
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    sys.exit(main())
