"""Pool processes ignore SIGTERM: only the main worker process decides how to stop.

Celery expects SIGTERM on its main process only, but systemd (KillMode=control-group),
`kill -- -PGID` and test harnesses send it to the whole process group. A pool process
that dies of it at the wrong moment leaves billiard's shared result-queue lock taken and
the main process hangs forever in its warm shutdown (seen with the embedded broker's
synchronous pool: 3 hangs in 5 tries). Ignoring it in the pool processes leaves the
stop to the main process: a warm shutdown sends each pool process a sentinel once its
current job is done; Celery's hard time limit still kills a pool process (SIGKILL after
its SIGTERM goes unheeded); a main process that dies takes its pool processes with it
(Celery sets PDEATHSIG=SIGKILL). billiard keeps an ignored SIGTERM ignored.
"""

from __future__ import annotations

import signal


def install() -> None:
    """Call in each pool process (worker_process_init)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
