"""Prometheus metrics of the render server, in a registry owned by the app (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
_JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 7200)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_length = Gauge("o2a_queue_length", "Jobs waiting for a worker", registry=self.registry)
        self.running_jobs = Gauge("o2a_running_jobs", "Jobs being rendered", registry=self.registry)
        self.job_seconds = Histogram("o2a_job_duration_seconds", "Wall time from start to end of a job run",
                                     ["state"], buckets=_JOB_BUCKETS, registry=self.registry)
        self.jobs_finished = Counter("o2a_jobs_finished", "Jobs that reached a terminal state", ["state"],
                                     registry=self.registry)
        self.step_seconds = Histogram("o2a_step_seconds", "Wall time of one denoising step (all guidance passes)",
                                      buckets=_STEP_BUCKETS, registry=self.registry)
        self.device_memory = Gauge("o2a_device_memory_bytes", "Device memory allocated by the model", ["device"],
                                   registry=self.registry)
        self._http = None

    def observe_step(self, seconds: float) -> None:
        self.step_seconds.observe(seconds)

    def observe_job(self, state: str, seconds: float) -> None:
        self.job_seconds.labels(state=state).observe(seconds)
        self.jobs_finished.labels(state=state).inc()

    def set_device_memory(self, device: str, used_bytes: int) -> None:
        self.device_memory.labels(device=device).set(used_bytes)

    def set_queue(self, queued: int, running: int) -> None:
        self.queue_length.set(queued)
        self.running_jobs.set(running)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Starts the /metrics HTTP endpoint; returns the bound port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._http = server
        return server.server_port

    @property
    def port(self) -> int | None:
        """Port of the /metrics endpoint, None when not serving."""
        return self._http.server_port if self._http is not None else None

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http = None
