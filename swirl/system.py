"""The machine this process runs on, for scripts, benchmarks and tests: a free local port, its memory.

Peak memory is the kernel's high-water mark of *this* process's resident set (`VmHWM` in /proc/self/status),
measured in the process that did the work (a benchmark runs each case in a child process and has the child
report it). Two other ways are wrong for that:
- `resource.getrusage(RUSAGE_SELF).ru_maxrss` survives `exec`: a child started by a large parent reports at
  least the parent's resident set at the fork, whatever the child itself used;
- `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`, read by the parent, is the largest of *all* its waited-for
  children (not the one just run), with the same inheritance.
`ru_maxrss` remains the fallback where /proc is missing (macOS: in bytes; Linux: KiB).
"""

from __future__ import annotations

import socket
import sys


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now (the OS picks it; another process may take it before use)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _status_bytes(field: str) -> int | None:
    """A `VmXXX:  N kB` line of /proc/self/status in bytes; None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started (exec'd), in bytes (see the module docstring)."""
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_bytes() -> int:
    """This process's resident memory now, in bytes."""
    rss = _status_bytes("VmRSS")
    if rss is not None:
        return rss
    import psutil  # no /proc (macOS): psutil, a dependency of mlflow and prefect

    return psutil.Process().memory_info().rss
