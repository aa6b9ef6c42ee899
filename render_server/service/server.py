"""Builds the gRPC server: RenderService, grpc.health.v1 and reflection, auth and access-log interceptors, TLS."""

from __future__ import annotations

import ipaddress
import logging
from concurrent import futures
from dataclasses import dataclass
from typing import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .._generated import render_service_pb2_grpc as pb_grpc
from .interceptors import AccessLogInterceptor, AuthInterceptor
from .servicer import SERVICE_NAME, RenderServicer

logger = logging.getLogger(__name__)

# Messages are at most 4 MiB by protocol; the small margin covers framing of a maximal chunk.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024


class ConfigError(ValueError):
    """The server configuration is unsafe or inconsistent (e.g. no token on a non-loopback address)."""


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    tokens: tuple[str, ...] = ()
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    threads: int = 128  # one per concurrent RPC (each WatchJob stream holds one)
    reflection: bool = True


def split_host_port(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"--listen: expected HOST:PORT (e.g. 127.0.0.1:50051 or [::1]:0), got {listen!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname or a wildcard: may be reachable from outside


def check_security(config: ServerConfig) -> None:
    host, _ = split_host_port(config.listen)
    if not is_loopback(host) and not config.tokens:
        raise ConfigError(
            f"--listen {config.listen} is reachable beyond this machine: a bearer token is required "
            "(--token-file FILE); listen on 127.0.0.1 for local use without one"
        )
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key must be given together")


def create_server(
    config: ServerConfig, servicer: RenderServicer
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Returns (server, bound port, health servicer); the server is not started. Health starts NOT_SERVING."""
    check_security(config)
    interceptors: list[grpc.ServerInterceptor] = [AccessLogInterceptor()]
    if config.tokens:
        interceptors.append(AuthInterceptor(config.tokens))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="rpc"),
        interceptors=interceptors,
        maximum_concurrent_rpcs=config.threads,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Let clients keep long WatchJob streams alive through NATs with 30 s pings.
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    pb_grpc.add_RenderServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if config.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
    try:
        if config.tls_cert is not None:
            credentials = grpc.ssl_server_credentials([(config.tls_key, config.tls_cert)])
            port = server.add_secure_port(config.listen, credentials)
        else:
            port = server.add_insecure_port(config.listen)
    except RuntimeError as exc:
        raise ConfigError(f"--listen: cannot bind {config.listen}: {exc}") from None
    if port == 0:
        raise ConfigError(f"--listen: cannot bind {config.listen}")
    return server, port, health_servicer


def set_serving(health_servicer: health.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, status)


def health_service_names() -> Sequence[str]:
    return ("", SERVICE_NAME)
