"""Cross-cutting checks: bearer-token authentication and access logging, as gRPC server interceptors.

Tokens are compared in constant time and never logged; only a rejected call's method and peer are logged. The
health service is exempt from auth so load balancers and orchestrators can probe readiness without secrets.
"""

from __future__ import annotations

import hmac
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import grpc

logger = logging.getLogger(__name__)

_EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


def load_tokens(path: str | Path) -> tuple[str, ...]:
    """One token per line; blank lines and lines starting with '#' are ignored. Raises ValueError when empty."""
    tokens = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            if any(c.isspace() for c in line):
                raise ValueError(f"{path}: a token must not contain whitespace")
            tokens.append(line)
    if not tokens:
        raise ValueError(f"{path}: no token found")
    return tuple(tokens)


def _wrap(handler: grpc.RpcMethodHandler, wrap: Callable[[Callable], Callable]) -> grpc.RpcMethodHandler:
    """Returns a handler of the same kind whose behaviour function is wrapped."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), handler.request_deserializer,
                                                   handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), handler.request_deserializer,
                                                    handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), handler.request_deserializer,
                                                    handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), handler.request_deserializer,
                                                 handler.response_serializer)


class AuthInterceptor(grpc.ServerInterceptor):
    """Requires `authorization: Bearer <token>` with one of `tokens` on every non-exempt call."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens:
            raise ValueError("AuthInterceptor needs at least one token")
        self._tokens = tuple(t.encode() for t in tokens)

    def _authorized(self, metadata) -> bool:
        values = [value for key, value in (metadata or ()) if key == "authorization"]
        if len(values) != 1 or not isinstance(values[0], str):
            return False
        scheme, _, token = values[0].partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        candidate = token.strip().encode()
        # Compare against every token (no early exit) so timing does not reveal which one matched.
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(candidate, known)
        return matched

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None or method.startswith(_EXEMPT_PREFIXES):
            return handler
        if self._authorized(handler_call_details.invocation_metadata):
            return handler

        def deny(_behaviour):
            def aborted(request_or_iterator, context):
                logger.warning("unauthenticated call", extra={"method": method, "peer": context.peer()})
                context.abort(grpc.StatusCode.UNAUTHENTICATED,
                              "missing or wrong bearer token (metadata 'authorization: Bearer <token>')")

            return aborted

        return _wrap(handler, deny)


class AccessLogInterceptor(grpc.ServerInterceptor):
    """Logs method, peer, status and duration of every unary call and the end of every stream."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        streaming = bool(handler.unary_stream or handler.stream_stream)

        def log(_start: float, context, code: str) -> None:
            logger.info("rpc", extra={"method": method, "peer": context.peer(), "code": code,
                                      "ms": round((time.monotonic() - _start) * 1000, 2)})

        def wrap(behaviour):
            if streaming:
                def stream(request_or_iterator, context):
                    start = time.monotonic()
                    code = "OK"
                    try:
                        yield from behaviour(request_or_iterator, context)
                    except GeneratorExit:  # the client went away (or cancelled) mid-stream
                        code = "CANCELLED"
                        raise
                    except BaseException:
                        code = _code_name(context)
                        raise
                    finally:
                        log(start, context, code)

                return stream

            def unary(request_or_iterator, context):
                start = time.monotonic()
                code = "OK"
                try:
                    return behaviour(request_or_iterator, context)
                except BaseException:
                    code = _code_name(context)
                    raise
                finally:
                    log(start, context, code)

            return unary

        return _wrap(handler, wrap)


def _code_name(context) -> str:
    code = getattr(context, "code", lambda: None)()
    return code.name if isinstance(code, grpc.StatusCode) else "ERROR"
