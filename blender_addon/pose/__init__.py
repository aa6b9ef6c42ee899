"""Pure-numpy pose math of the add-on (no bpy): layout, bone maps, projection, visibility, preview."""

from .types import KEYPOINT_NAMES, LAYOUT, NUM_KEYPOINTS, PoseFormatError, PoseSequence

__all__ = ["KEYPOINT_NAMES", "LAYOUT", "NUM_KEYPOINTS", "PoseFormatError", "PoseSequence"]
