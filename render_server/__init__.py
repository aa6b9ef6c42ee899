"""One-to-All render server.

Kept import-light on purpose: the pose and service code imports ``render_server.*`` on machines
without torch, so nothing here may import torch, diffusers or other heavy packages.
"""

__all__: list[str] = []
