"""Pure-Python client for the One-to-All render service (grpcio + protobuf + numpy; no bpy, no torch)."""
