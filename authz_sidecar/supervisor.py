"""`kaizen-studio sidecar`'s process model: one worker in this process, or a supervisor
that starts `KAIZEN_SIDECAR_WORKERS` spawned worker processes on the shared ports, forwards
SIGINT/SIGTERM, restarts a worker that dies (not one that failed on configuration, exit
2), holds the `fleet_ready` event workers wait on (runtime.Worker) and points
`PROMETHEUS_MULTIPROC_DIR` at one directory so `/metrics` sums every worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import time
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

import uvloop

from authz_sidecar.configuration import ConfigurationError, check_settings
from authz_sidecar.runtime import Worker
from authz_sidecar.settings import SidecarSettings
from policy.runtime import tracing
from policy.runtime.heap import settle_heap
from policy.runtime.logs import configure_logging

log = logging.getLogger(__name__)


def _configure_logging(settings: SidecarSettings, index: int) -> None:
    configure_logging("sidecar", settings.log_level, json_format=settings.log_json, worker=index)


def _worker_main(settings_data: dict[str, Any], index: int, fleet_ready: ProcessEvent) -> None:
    settings = SidecarSettings(**settings_data)
    _configure_logging(settings, index)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor forwards SIGTERM
    tracing.configure("kaizen-sidecar")  # per worker: its own exporter thread
    settle_heap()
    try:
        uvloop.run(Worker(settings, index, fleet_ready).run())
    except ConfigurationError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


def serve(settings: SidecarSettings) -> int:
    """Run the sidecar until SIGINT/SIGTERM; the exit code."""
    _configure_logging(settings, 0)
    try:
        check_settings(settings)
    except ConfigurationError as exc:
        log.error("%s", exc)
        return 2
    workers = settings.workers
    if workers > 1 and not settings.redis_url:
        log.error(
            "KAIZEN_SIDECAR_WORKERS=%d needs KAIZEN_REDIS_URL: budgets and single-use grants "
            "must be shared between workers; unset it to run one worker",
            workers,
        )
        return 2
    if workers == 1:
        tracing.configure("kaizen-sidecar")
        settle_heap()
        try:
            uvloop.run(Worker(settings, 0).run())
        except ConfigurationError as exc:
            log.error("%s", exc)
            return 2
        return 0
    return _supervise(settings, workers)


def _supervise(settings: SidecarSettings, workers: int) -> int:
    metrics_dir = settings.state_dir / "metrics" / str(os.getpid())
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    context = multiprocessing.get_context("spawn")
    data = settings.model_dump()
    processes: dict[int, multiprocessing.process.BaseProcess] = {}
    stopping = False
    # Set by worker 0 once it holds a verified bundle, never cleared: until then only it
    # listens; after it, every worker (a restarted one too) listens once it holds one.
    fleet_ready = context.Event()

    def start(index: int) -> None:
        process = context.Process(
            target=_worker_main, args=(data, index, fleet_ready), daemon=False
        )
        process.start()
        processes[index] = process

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in processes.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for index in range(workers):
        start(index)
    log.info("sidecar supervisor %d started %d workers", os.getpid(), workers)
    exit_code = 0
    try:
        while processes:
            time.sleep(0.2)
            for index, process in list(processes.items()):
                if process.is_alive():
                    continue
                del processes[index]
                if stopping:
                    continue
                if process.exitcode == 2:  # a configuration error: restarting cannot help
                    exit_code = 2
                    on_signal(signal.SIGTERM, None)
                    continue
                log.error("worker %d exited with %s; restarting it", index, process.exitcode)
                time.sleep(1.0)
                start(index)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return exit_code
