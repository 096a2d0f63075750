"""How many threads this process may really use.

ONNX Runtime sizes its pool from the host's cores and ignores cgroup quotas and CPU affinity, so a container
limited to 2 CPUs on a 64-core host would start 64 threads and thrash. The runtime picks the count itself:
the smaller of the CPU affinity and the cgroup (v2 or v1) CPU quota rounded up, at least 1;
``ONNXPIPE_THREADS`` overrides.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from onnxpipe_runtime.errors import InputError

ENV_VAR = "ONNXPIPE_THREADS"


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cgroup_paths(proc_cgroup: Path) -> tuple[str | None, dict[str, str]]:
    """The v2 path (``0::/x``) and v1 paths by controller from /proc/self/cgroup."""
    v2: str | None = None
    v1: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None, {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2 = path
        for c in controllers.split(","):
            if c:
                v1[c] = path
    return v2, v1


def _ancestors(base: Path, rel: str) -> list[Path]:
    """``base/rel`` and each parent up to ``base`` (a quota anywhere above also limits us)."""
    parts = [p for p in rel.strip("/").split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _quota_v2(root: Path, rel: str) -> float | None:
    limits = []
    for d in _ancestors(root, rel):
        try:
            quota, period = (d / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max" and float(period) > 0:
            limits.append(float(quota) / float(period))
    return min(limits) if limits else None


def _quota_v1(root: Path, rel: str) -> float | None:
    for name in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
        base = root / name
        if not base.is_dir():
            continue
        limits = []
        for d in _ancestors(base, rel):
            try:
                quota = int((d / "cpu.cfs_quota_us").read_text().strip())
                period = int((d / "cpu.cfs_period_us").read_text().strip())
            except (OSError, ValueError):
                continue
            if quota > 0 and period > 0:
                limits.append(quota / period)
        return min(limits) if limits else None
    return None


def cgroup_cpu_limit(
    root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup"
) -> float | None:
    """The CPU quota (in CPUs, possibly fractional) of this process's cgroup, or None when unlimited."""
    root, proc_cgroup = Path(root), Path(proc_cgroup)
    v2, v1 = _cgroup_paths(proc_cgroup)
    limits = []
    if v2 is not None and (root / "cgroup.controllers").exists():
        q = _quota_v2(root, v2)
        if q is not None:
            limits.append(q)
    cpu_path = v1.get("cpu") or v1.get("cpuacct")
    if cpu_path is not None:
        q = _quota_v1(root, cpu_path)
        if q is not None:
            limits.append(q)
    return min(limits) if limits else None


def default_threads(
    root: str | Path = "/sys/fs/cgroup",
    proc_cgroup: str | Path = "/proc/self/cgroup",
    affinity: int | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Intra-op threads for this process: ``ONNXPIPE_THREADS``, else min(affinity, ceil(quota)), at least 1."""
    raw = (os.environ if env is None else env).get(ENV_VAR)
    if raw not in (None, ""):
        return parse_threads(raw, ENV_VAR)
    cpus = affinity if affinity is not None else _affinity()
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def parse_threads(value: object, source: str = "threads") -> int:
    try:
        n = int(str(value))
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"{source}: expected a whole number of threads >= 1, got {value!r}")
    return n
