"""The render server application: wires store, queue, engines, workers, servicer and gRPC server together.

`RenderApp` is what `o2a-server` runs and what the tests start in-process. Weights load in a background thread
after the server started listening: meanwhile health reports NOT_SERVING, GetCapabilities says `ready = false`
and submitted jobs wait in the queue.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import Engine, EngineConfig
from .jobs.queue import JobQueue
from .jobs.spec import JobState
from .jobs.store import JobStore
from .jobs.worker import Worker
from .metrics import ServerMetrics
from .service.limits import ServerLimits
from .service.server import ConfigError, ServerConfig, create_server, set_serving
from .service.servicer import RenderServicer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppConfig:
    data_dir: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(model="tiny"))
    devices: tuple[str, ...] = ("cpu",)
    limits: ServerLimits = field(default_factory=ServerLimits)
    heartbeat_interval_s: float = 10.0
    lease_check_interval_s: float = 1.0
    metrics_port: int | None = None
    port_file: Path | None = None
    parallel: Any = None  # render_server.parallel.config.ParallelConfig: several devices per engine


class RenderApp:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        data = Path(config.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_data_dir(data)
        self.store = JobStore(data / "jobs.sqlite3")
        self.queue = JobQueue(self.store, max_queued=config.limits.max_queued_jobs)
        from .storage.assets import AssetStore

        self.assets = AssetStore(data / "assets")
        self.jobs_dir = data / "jobs"
        self.metrics = ServerMetrics()
        self.queue.add_change_listener(self._update_queue_metrics)
        self.engines = [
            Engine(EngineConfig(**{**config.engine.__dict__, "device": gang[0], "gang": gang,
                                   "parallel": config.parallel, "data_dir": data}))
            for gang in _gangs(config.devices, config.parallel)
        ]
        self.workers = [
            Worker(queue=self.queue, engine=engine, assets=self.assets, jobs_dir=self.jobs_dir,
                   max_reference_pixels=config.limits.max_reference_pixels, metrics=self.metrics,
                   name=f"worker-{engine.device}")
            for engine in self.engines
        ]
        self.servicer = RenderServicer(
            queue=self.queue, assets=self.assets, jobs_dir=self.jobs_dir, limits=config.limits,
            planner=_EnginePool(self.engines), heartbeat_interval_s=config.heartbeat_interval_s,
            worker_count=len(self.workers),
        )
        self.server, self.port, self.health = create_server(config.server, self.servicer)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self.load_error: BaseException | None = None

    def start(self) -> "RenderApp":
        requeued = self.queue.recover()
        if requeued:
            logger.info("resuming interrupted jobs", extra={"job_ids": requeued})
        self.server.start()
        if self.config.port_file is not None:
            tmp = Path(f"{self.config.port_file}.tmp")
            tmp.write_text(str(self.port))
            os.replace(tmp, self.config.port_file)
        if self.config.metrics_port is not None:
            port = self.metrics.serve(self.config.metrics_port)
            logger.info("metrics endpoint", extra={"port": port})
        logger.info("listening", extra={"address": self.config.server.listen, "port": self.port,
                                        "tls": self.config.server.tls_cert is not None,
                                        "auth": bool(self.config.server.tokens)})
        self._spawn(self._load_and_run, "loader")
        self._spawn(self._lease_loop, "leases")
        self._update_queue_metrics()
        return self

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        return self._ready.wait(timeout_s)

    def stop(self, grace_s: float = 2.0) -> None:
        """Graceful stop: NOT_SERVING, workers stop after their current step (jobs resume on restart)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        set_serving(self.health, False)
        for worker in self.workers:
            worker.stop()
        self.queue.close()
        self.server.stop(grace_s).wait()
        for worker in self.workers:
            if worker.is_alive():
                worker.join(timeout=60)
        for thread in self._threads:
            thread.join(timeout=10)
        for engine in self.engines:
            engine.close()
        self.metrics.close()
        self.store.close()
        self._lock_file.close()

    def wait_for_termination(self) -> None:
        self.server.wait_for_termination()

    # -- internals ------------------------------------------------------------------------------------------------

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _load_and_run(self) -> None:
        try:
            for engine in self.engines:
                engine.load()
        except BaseException as exc:  # startup boundary: keep NOT_SERVING and say why
            self.load_error = exc
            logger.exception("model loading failed; the server stays NOT_SERVING")
            return
        if self._stopping.is_set():
            return
        for worker in self.workers:
            worker.start()
        set_serving(self.health, True)
        self._ready.set()
        logger.info("serving", extra={"workers": len(self.workers)})

    def _lease_loop(self) -> None:
        while not self._stopping.wait(self.config.lease_check_interval_s):
            try:
                self.queue.expire_leases()
            except Exception:  # a background loop must survive one bad pass; the next pass retries
                logger.exception("lease check failed")

    def _update_queue_metrics(self) -> None:
        if self._stopping.is_set():
            return
        self.metrics.set_queue(self.store.count_in_state(JobState.QUEUED), self.store.count_in_state(JobState.RUNNING))


class _EnginePool:
    """The servicer's view of all engines (same model on every device)."""

    def __init__(self, engines: list[Engine]) -> None:
        self._engines = engines

    def facts(self):
        facts = self._engines[0].facts()
        devices = tuple(d for e in self._engines for d in e.facts().devices)
        return type(facts)(**{**facts.__dict__, "devices": devices})

    def ready(self) -> bool:
        return all(e.ready() for e in self._engines)

    def segment_count(self, frame_count: int, chunk_plan: str, image_pose_transfer: str) -> int:
        return self._engines[0].segment_count(frame_count, chunk_plan, image_pose_transfer)


def _gangs(devices: tuple[str, ...], parallel: Any) -> list[tuple[str, ...]]:
    """One engine per device, or per gang of `parallel.gpus` devices with --parallel."""
    if parallel is None or not parallel.enabled:
        return [(d,) for d in devices]
    from .parallel.config import device_gangs

    return device_gangs(devices, parallel)


def _lock_data_dir(data: Path):
    """An exclusive lock on the data folder (released by the OS even after kill -9)."""
    handle = open(data / "server.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"--data-dir {data} is in use by another o2a-server process") from None
    return handle
