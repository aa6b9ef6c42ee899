"""Plain settings objects shared by the UI, the job runner and the farm CLI (no bpy).

Secrets live only here at run time: the token comes from the add-on preferences or an environment
variable and is never written into a .blend (job records keep ids and settings, never the token).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_TOKEN_ENV = "O2A_TOKEN"


@dataclass(frozen=True)
class ServerSettings:
    address: str = DEFAULT_ADDRESS
    use_tls: bool = False
    ca_file: str = ""             # PEM bundle for private CAs; empty = system roots
    token: str = ""               # bearer token; empty = no authentication
    connect_timeout_s: float = 10.0
    rpc_timeout_s: float = 60.0   # unary calls and uploads; streams have no overall deadline

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise ValueError("server address: empty (expected host:port)")
        if self.connect_timeout_s <= 0 or self.rpc_timeout_s <= 0:
            raise ValueError("timeouts must be positive")

    def __repr__(self) -> str:  # never print the token
        return (f"ServerSettings(address={self.address!r}, use_tls={self.use_tls}, "
                f"token={'set' if self.token else 'none'}, connect_timeout_s={self.connect_timeout_s}, "
                f"rpc_timeout_s={self.rpc_timeout_s})")


def resolve_token(explicit: str, env_var: str = DEFAULT_TOKEN_ENV) -> str:
    """The preferences token when set, else the environment variable (empty when neither)."""
    if explicit:
        return explicit
    return os.environ.get(env_var or DEFAULT_TOKEN_ENV, "")
