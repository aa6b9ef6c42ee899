"""Typed errors of the client library, mapped from gRPC status codes at the network boundary.

Callers (the add-on's worker thread, the CLI, farm scripts) branch on the class, never on message text:
`ServerUnavailable` and `ResourceExhausted` are worth retrying later, `InvalidRequest` names the offending field,
`Unauthenticated` asks for a token. Every error carries the gRPC code (or None for client-side problems), the
server's message and a short hint for the user. The CLI turns each class into one exit code (`exit_code`).
"""

from __future__ import annotations

import grpc


class ClientError(Exception):
    """Base class of every error the client library raises on purpose."""

    #: Exit code of the `o2a` command line for this error (see docs/client.md).
    exit_code = 1
    #: True when the same call may succeed later without any change.
    retryable = False
    default_hint = ""

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = self.default_hint if hint is None else hint

    def __str__(self) -> str:
        text = self.message
        if self.code is not None:
            text = f"{text} [{self.code.name}]"
        if self.hint:
            text = f"{text} (hint: {self.hint})"
        return text


class InvalidRequest(ClientError):
    """The server (or the client, before sending) refused a field. `field` is e.g. 'driving_poses.frames[3]'."""

    exit_code = 2

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, hint: str | None = None,
                 field: str = "") -> None:
        super().__init__(message, code=code, hint=hint)
        self.field = field or _field_of(message)


class ServerUnavailable(ClientError):
    """No server answered (down, unreachable, shutting down, or the call ran past its deadline)."""

    exit_code = 3
    retryable = True
    default_hint = "check that o2a-server runs and that --server HOST:PORT is right; retry later"


class DeadlineExceeded(ServerUnavailable):
    """A call ran past its deadline (the server is overloaded or the network stalls)."""


class ResourceExhausted(ClientError):
    """The server is full (queue limit) or ran out of GPU memory."""

    exit_code = 3
    retryable = True
    default_hint = "retry later, or lower the output size / frame count"


class Unauthenticated(ClientError):
    """Missing or wrong bearer token, or the server refused the credentials."""

    exit_code = 4
    default_hint = "pass the server's token (--token-file FILE or the O2A_TOKEN environment variable)"


class PermissionDenied(ClientError):
    exit_code = 4


class NotFound(ClientError):
    """Unknown job, asset or output file."""

    exit_code = 5


class AlreadyExists(ClientError):
    """A client_request_id was reused for a different request."""

    exit_code = 2
    default_hint = "use a new --request-id (or none) for a different request"


class FailedPrecondition(ClientError):
    """The call does not fit the job's state, e.g. downloading frames that are not rendered yet."""

    exit_code = 6


class ServerError(ClientError):
    """The server failed internally (INTERNAL, UNKNOWN, DATA_LOSS, ...); see the server log."""

    exit_code = 7


class IntegrityError(ClientError):
    """Downloaded bytes do not match the size or SHA-256 the server announced."""

    exit_code = 7
    retryable = True
    default_hint = "download again"


class Cancelled(ClientError):
    """The operation was cancelled on the client side (CancelToken.cancel() or RenderClient.close())."""

    exit_code = 130


class WatchGaveUp(ServerUnavailable):
    """The job stream could not be re-opened within the reconnect budget; the job itself may still run."""


_BY_CODE: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.UNAVAILABLE: ServerUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.ABORTED: ServerUnavailable,
}


def from_rpc_error(exc: grpc.RpcError, what: str) -> ClientError:
    """Turns a grpc.RpcError of the call `what` (e.g. 'SubmitJob') into the matching ClientError."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    cls = _BY_CODE.get(code, ServerError) if isinstance(code, grpc.StatusCode) else ServerError
    return cls(f"{what}: {details}", code=code if isinstance(code, grpc.StatusCode) else None)


def _field_of(message: str) -> str:
    """The server's INVALID_ARGUMENT messages start with the field name: 'Call: field.path: what is wrong'."""
    parts = [p.strip() for p in message.split(": ")]
    # parts[0] is the call name added by from_rpc_error when present; the field is the next token without spaces.
    for part in parts[:2]:
        if part and " " not in part and part[0].islower():
            return part
    return ""
