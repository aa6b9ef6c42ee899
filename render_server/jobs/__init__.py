"""Durable jobs: domain types (`spec`), the SQLite store (`store`), the queue (`queue`) and the GPU worker (`worker`)."""
