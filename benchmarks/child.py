"""Run one command and report its wall time and the kernel's peak memory of it, exactly.

    python -m benchmarks.child RESULT.json -- COMMAND [ARGS...]

Why a launcher: Linux keeps a process's peak RSS across `exec`, taken from the memory image it had
before (for a child of fork or vfork, its parent's). Measured straight from the harness, every child
would report at least the harness's own ~190 MiB. Forked from this small process instead, the
command's peak (`ru_maxrss` from wait4) is its own, give or take this launcher's ~10 MiB.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write(__doc__ or "")
        return 2
    result, command = Path(argv[0]), argv[2:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: become the command
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    result.write_text(
        json.dumps(
            {
                "exit_code": code,
                "wall_s": wall,
                "max_rss_mib": usage.ru_maxrss / 1024,  # Linux reports KiB
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }
        ),
        encoding="utf-8",
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
