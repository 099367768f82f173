"""A network-safe Ray connection for the `ray` backend: a private local cluster, or an existing one.

A local cluster starts the way DESIGN.md ("Ray on this box") found safe: no dashboard, usage stats off
and their report aimed at loopback, an empty bootstrap config in a private HOME (else Ray probes cloud
metadata addresses), a fresh temp dir per run (a reused one makes the next start hang).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from engine.backends.base import scoped_environ
from engine.errors import ModelError

NETWORK_SAFETY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",  # the "usage disabled" report goes to loopback
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "VLLM_HOST_IP": "127.0.0.1",  # a replica's tensor-parallel group stays on its own node
}
# A local cluster's node address is loopback, found without Ray's route probe to a public DNS address.
LOCAL_CLUSTER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class RayCluster:
    """A network-safe Ray connection: a private local cluster in a fresh temp dir, or an existing one."""

    def __init__(self, *, address: str | None, temp_base: str | None, num_cpus: int | None):
        os.environ.update(NETWORK_SAFETY_ENV)
        self.address = address
        self.temp_dir: Path | None = None
        self.owned = False
        import ray

        if ray.is_initialized():  # the caller's own Ray session: use it, leave it running
            return
        if address is None:
            self._start_local(ray, temp_base, num_cpus)
        else:
            token = Path.home() / ".ray" / "auth_token"  # where `ray start` leaves the cluster's token
            if token.is_file() and not {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
                os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except Exception as e:  # connection refused, auth, version mismatch: keep Ray's reason
                raise ModelError(f"cannot attach to the Ray cluster at {address}: {e}") from e
        self.owned = True

    def _start_local(self, ray: Any, temp_base: str | None, num_cpus: int | None) -> None:
        base = Path(temp_base or tempfile.gettempdir()).expanduser().resolve()
        base.mkdir(parents=True, exist_ok=True)
        # Fresh per run: a temp dir that held a stopped cluster makes the next ray.init hang joining it.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ifray-", dir=base))
        home = self.temp_dir / "home"
        home.mkdir()
        # Without this file Ray's usage module probes cloud metadata addresses to guess the provider.
        (home / "ray_bootstrap_config.yaml").write_text("{}\n")
        os.environ.update(LOCAL_CLUSTER_ENV)
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # the env var above is read at import time
        try:  # the cluster's processes inherit this HOME; this process gets its own back
            with scoped_environ("HOME", str(home)):
                ray.init(
                    address="local",
                    include_dashboard=False,
                    _temp_dir=str(self.temp_dir),
                    num_cpus=num_cpus,
                    object_store_memory=512 * 2**20,
                    logging_level=logging.WARNING,
                )
        except Exception as e:
            raise ModelError(f"could not start a local Ray cluster (logs in {self.temp_dir}): {e}") from e

    def logs(self) -> str:
        return str(self.temp_dir / "session_latest" / "logs") if self.temp_dir else "the cluster's logs"

    def shutdown(self, keep_logs: bool = False) -> None:
        import ray

        if self.owned and ray.is_initialized():
            ray.shutdown()
        self.owned = False
        if self.temp_dir is not None and not keep_logs:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def remove_leaked_segments(names: set[str]) -> list[str]:
    """Unlink the replicas' /dev/shm segments that no live process maps any more (a killed engine
    leaves its 160 MiB segments behind); return the names removed."""
    if not names:
        return []
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            mapped.update(
                line.split()[-1] for line in maps.read_text().splitlines() if "/dev/shm/psm_" in line
            )
        except OSError:  # the process ended while we looked
            continue
    removed = []
    for name in sorted(names - mapped):
        try:
            os.unlink(name)
            removed.append(name)
        except FileNotFoundError:
            continue
    return removed
