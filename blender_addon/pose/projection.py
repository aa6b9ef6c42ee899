"""Project world points through a render camera into image pixels (top-left origin, y down).

Pure numpy. The camera is described by the same matrices Blender uses for rendering:
``Object.calc_matrix_camera(depsgraph, x=W, y=H, scale_x=aspect_x, scale_y=aspect_y)`` (lens,
sensor fit, shift, orthographic scale, pixel aspect) and the normalized inverse camera world
matrix. The math equals ``bpy_extras.object_utils.world_to_camera_view`` (see the add-on tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraView:
    projection: np.ndarray  # (4, 4) camera -> clip space
    view: np.ndarray        # (4, 4) world -> camera space (camera looks down -Z)
    width: int              # full render width in pixels (after resolution percentage)
    height: int
    orthographic: bool
    # Render border (fractions, y from the bottom) when "crop to border" is on, else None.
    border: tuple[float, float, float, float] | None = None
    name: str = ""

    @property
    def location(self) -> np.ndarray:
        """Camera position in world space."""
        return np.linalg.inv(self.view)[:3, 3]

    @property
    def forward(self) -> np.ndarray:
        """World-space viewing direction."""
        inv = np.linalg.inv(self.view)
        d = -inv[:3, 2]
        return d / np.linalg.norm(d)

    @property
    def canvas(self) -> tuple[int, int]:
        """Output image size (width, height): the border rectangle when cropping."""
        if self.border is None:
            return self.width, self.height
        min_x, max_x, min_y, max_y = self.border
        return (max(1, round(self.width * (max_x - min_x))), max(1, round(self.height * (max_y - min_y))))


@dataclass(frozen=True)
class Projected:
    xy: np.ndarray        # (N, 2) pixels in the output canvas, top-left origin, y down
    depth: np.ndarray     # (N,) distance in front of the camera along its axis (<= 0: behind)
    in_front: np.ndarray  # (N,) bool
    in_frame: np.ndarray  # (N,) bool, inside the canvas (and in front)


def render_size(resolution_x: int, resolution_y: int, percentage: int) -> tuple[int, int]:
    """Blender's integer render size for a resolution percentage."""
    return resolution_x * percentage // 100, resolution_y * percentage // 100


def project(points: np.ndarray, cam: CameraView) -> Projected:
    """Project world-space points (N, 3) through ``cam``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    homo = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    view = homo @ cam.view.T
    depth = -view[:, 2]
    clip = view @ cam.projection.T
    w = clip[:, 3]
    in_front = depth > 1e-6
    safe_w = np.where(np.abs(w) > 1e-12, w, 1e-12)
    ndc = clip[:, :2] / safe_w[:, None]
    x = (ndc[:, 0] + 1.0) * 0.5 * cam.width
    y = (1.0 - (ndc[:, 1] + 1.0) * 0.5) * cam.height
    if cam.border is not None:
        min_x, _, _, max_y = cam.border
        x = x - cam.width * min_x
        y = y - cam.height * (1.0 - max_y)
    cw, ch = cam.canvas
    in_frame = in_front & (x >= 0) & (x <= cw) & (y >= 0) & (y <= ch)
    xy = np.stack([x, y], axis=1)
    xy[~in_front] = 0.0  # meaningless coordinates for points behind the camera
    return Projected(xy, depth, in_front, in_frame)
