"""The gRPC layer: request validation, conversion to protocol messages, the servicer, interceptors, the server."""
