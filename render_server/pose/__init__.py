"""Keypoints -> pose frames: COCO-WholeBody-133 format, official pose drawing, reference alignment, detector.

Pure numpy + OpenCV (Pillow only for the official ``resizecrop``; onnxruntime only for the optional detector).
Import the submodules directly: ``keypoints``, ``openpose``, ``draw``, ``align``, ``retarget``, ``prepare``,
``detect``, ``cli``.
"""
