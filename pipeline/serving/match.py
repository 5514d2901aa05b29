"""What a served ``predict`` shares with the server, and what it takes from its caller.

A fork of the server takes the caller's standard streams, working folder, environment, umask, time zone and temporary
folder, and the thread counts the caller's environment names (``thread_counts``). What a fork cannot take from its
caller it must share with it: a caller is served only where its CPU affinity, resource limits, cgroup and nice value
are the server's own (``process_settings``). Any other caller runs the command in a process of its own, and
``mvemo predict --verbose`` says why.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Each thread pool of a process of mvemo, and the variables that set its size when the process starts its libraries,
# the first one set winning: torch's own pool (MKL's variable over OpenMP's, as torch reads them), the BLAS behind
# numpy and scikit-learn, and the OpenMP runtime (threadpoolctl's names).
THREAD_POOLS = {
    "torch": ("MKL_NUM_THREADS", "OMP_NUM_THREADS"),
    "blas": ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"),
    "openmp": ("OMP_NUM_THREADS",),
}
CGROUP = Path("/proc/self/cgroup")


def process_settings() -> dict[str, Any]:
    """What a process inherits and a fork of another could not take from it, as JSON data: its CPU affinity (where
    the system has one), its resource limits (soft and hard), its cgroup (on Linux) and its nice value."""
    settings: dict[str, Any] = {}
    if hasattr(os, "sched_getaffinity"):
        settings["CPU affinity"] = sorted(os.sched_getaffinity(0))
    settings["resource limits"] = {
        name: resource.getrlimit(getattr(resource, name))
        for name in sorted(vars(resource))
        if name.startswith("RLIMIT_")
    }
    if CGROUP.is_file():
        settings["cgroup"] = CGROUP.read_text().strip()
    settings["nice value"] = os.getpriority(os.PRIO_PROCESS, 0)
    return json.loads(json.dumps(settings))  # lists for tuples, as a caller's settings arrive


def difference(caller: Mapping[str, Any], own: Mapping[str, Any]) -> str | None:
    """Why a process of settings ``caller`` (``process_settings``) cannot be served by a server of settings ``own``,
    in a few words; ``None`` where they are the same."""
    for name, mine in own.items():
        theirs = caller.get(name)
        if theirs == mine:
            continue
        if name == "resource limits" and isinstance(theirs, dict):
            limit = next(key for key in mine if theirs.get(key) != mine[key])
            return f"its resource limit {limit} (soft, hard) is {theirs.get(limit)}, the server's {mine[limit]}"
        if name == "cgroup" and isinstance(theirs, str):  # a line per hierarchy: the first that differs
            theirs, mine = next(
                (a, b) for a, b in itertools.zip_longest(theirs.splitlines(), mine.splitlines(), fillvalue="") if a != b
            )
        return f"its {name} is {_shown(theirs)}, the server's {_shown(mine)}"
    return None


def thread_counts(
    env: Mapping[str, str], *, started: Mapping[str, int], started_env: Mapping[str, str]
) -> dict[str, int] | str:
    """The size of each of the server's thread ``started`` pools (by ``THREAD_POOLS`` name: the sizes it started
    with) for a caller of environment ``env``, as a process of its own would take them: the count its variables name,
    else the size a process takes where none is named, which the server knows where its own environment
    (``started_env``) named none either. Where it did, why the caller cannot be served."""
    counts = {}
    for pool, size in started.items():
        named = _named_count(env, THREAD_POOLS[pool])
        server_named = _named_count(started_env, THREAD_POOLS[pool])
        if named is not None:
            counts[pool] = named[1]
        elif server_named is None:
            counts[pool] = size
        else:
            variable, count = server_named
            return (
                f"the server started with {variable}={count}, which sets its {pool} threads, and this process sets none"
            )
    return counts


def _named_count(env: Mapping[str, str], variables: tuple[str, ...]) -> tuple[str, int] | None:
    """The first of ``variables`` that ``env`` sets to a positive count, and that count (OpenMP's list of counts per
    level: its first)."""
    for variable in variables:
        first = env.get(variable, "").split(",")[0].strip()
        if first.isdigit() and int(first) > 0:
            return variable, int(first)
    return None


def _shown(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return "CPUs " + ",".join(map(str, value))
    return str(value)
