from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class GuidanceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GUIDANCE_MODE_UNSPECIFIED: _ClassVar[GuidanceMode]
    GUIDANCE_MODE_STANDARD: _ClassVar[GuidanceMode]
    GUIDANCE_MODE_POSE_LAST: _ClassVar[GuidanceMode]
    GUIDANCE_MODE_NONE: _ClassVar[GuidanceMode]

class FaceLighteningMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FACE_LIGHTENING_MODE_UNSPECIFIED: _ClassVar[FaceLighteningMode]
    FACE_LIGHTENING_MODE_AUTO: _ClassVar[FaceLighteningMode]
    FACE_LIGHTENING_MODE_ON: _ClassVar[FaceLighteningMode]
    FACE_LIGHTENING_MODE_OFF: _ClassVar[FaceLighteningMode]

class AlignmentMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALIGNMENT_MODE_UNSPECIFIED: _ClassVar[AlignmentMode]
    ALIGNMENT_MODE_REFERENCE_RETARGET: _ClassVar[AlignmentMode]
    ALIGNMENT_MODE_REFERENCE: _ClassVar[AlignmentMode]
    ALIGNMENT_MODE_POSE: _ClassVar[AlignmentMode]
    ALIGNMENT_MODE_POSE_RETARGET: _ClassVar[AlignmentMode]

class ChunkPlan(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHUNK_PLAN_UNSPECIFIED: _ClassVar[ChunkPlan]
    CHUNK_PLAN_DEFAULT: _ClassVar[ChunkPlan]
    CHUNK_PLAN_OFFICIAL: _ClassVar[ChunkPlan]

class ImagePoseTransferMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_POSE_TRANSFER_MODE_UNSPECIFIED: _ClassVar[ImagePoseTransferMode]
    IMAGE_POSE_TRANSFER_MODE_AUTO: _ClassVar[ImagePoseTransferMode]
    IMAGE_POSE_TRANSFER_MODE_PER_FRAME: _ClassVar[ImagePoseTransferMode]

class AssetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSET_KIND_UNSPECIFIED: _ClassVar[AssetKind]
    ASSET_KIND_REFERENCE_IMAGE: _ClassVar[AssetKind]
    ASSET_KIND_POSE_SEQUENCE: _ClassVar[AssetKind]

class FrameKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_KIND_UNSPECIFIED: _ClassVar[FrameKind]
    FRAME_KIND_OUTPUT: _ClassVar[FrameKind]
    FRAME_KIND_POSE: _ClassVar[FrameKind]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
GUIDANCE_MODE_UNSPECIFIED: GuidanceMode
GUIDANCE_MODE_STANDARD: GuidanceMode
GUIDANCE_MODE_POSE_LAST: GuidanceMode
GUIDANCE_MODE_NONE: GuidanceMode
FACE_LIGHTENING_MODE_UNSPECIFIED: FaceLighteningMode
FACE_LIGHTENING_MODE_AUTO: FaceLighteningMode
FACE_LIGHTENING_MODE_ON: FaceLighteningMode
FACE_LIGHTENING_MODE_OFF: FaceLighteningMode
ALIGNMENT_MODE_UNSPECIFIED: AlignmentMode
ALIGNMENT_MODE_REFERENCE_RETARGET: AlignmentMode
ALIGNMENT_MODE_REFERENCE: AlignmentMode
ALIGNMENT_MODE_POSE: AlignmentMode
ALIGNMENT_MODE_POSE_RETARGET: AlignmentMode
CHUNK_PLAN_UNSPECIFIED: ChunkPlan
CHUNK_PLAN_DEFAULT: ChunkPlan
CHUNK_PLAN_OFFICIAL: ChunkPlan
IMAGE_POSE_TRANSFER_MODE_UNSPECIFIED: ImagePoseTransferMode
IMAGE_POSE_TRANSFER_MODE_AUTO: ImagePoseTransferMode
IMAGE_POSE_TRANSFER_MODE_PER_FRAME: ImagePoseTransferMode
ASSET_KIND_UNSPECIFIED: AssetKind
ASSET_KIND_REFERENCE_IMAGE: AssetKind
ASSET_KIND_POSE_SEQUENCE: AssetKind
FRAME_KIND_UNSPECIFIED: FrameKind
FRAME_KIND_OUTPUT: FrameKind
FRAME_KIND_POSE: FrameKind

class Pose(_message.Message):
    __slots__ = ("keypoints",)
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    keypoints: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, keypoints: _Optional[_Iterable[float]] = ...) -> None: ...

class PoseSequence(_message.Message):
    __slots__ = ("canvas_width_px", "canvas_height_px", "fps", "frames")
    CANVAS_WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    CANVAS_HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    canvas_width_px: int
    canvas_height_px: int
    fps: float
    frames: _containers.RepeatedCompositeFieldContainer[Pose]
    def __init__(self, canvas_width_px: _Optional[int] = ..., canvas_height_px: _Optional[int] = ..., fps: _Optional[float] = ..., frames: _Optional[_Iterable[_Union[Pose, _Mapping]]] = ...) -> None: ...

class ReferencePose(_message.Message):
    __slots__ = ("keypoints", "detect")
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    DETECT_FIELD_NUMBER: _ClassVar[int]
    keypoints: Pose
    detect: bool
    def __init__(self, keypoints: _Optional[_Union[Pose, _Mapping]] = ..., detect: _Optional[bool] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("protocol_version", "protocol_minor_version", "server_version", "model", "limits", "pose_detection_available", "keypoint_format", "heartbeat_interval_s", "worker_count")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_MINOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    POSE_DETECTION_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    KEYPOINT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    WORKER_COUNT_FIELD_NUMBER: _ClassVar[int]
    protocol_version: str
    protocol_minor_version: int
    server_version: str
    model: ModelInfo
    limits: Limits
    pose_detection_available: bool
    keypoint_format: str
    heartbeat_interval_s: float
    worker_count: int
    def __init__(self, protocol_version: _Optional[str] = ..., protocol_minor_version: _Optional[int] = ..., server_version: _Optional[str] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., pose_detection_available: _Optional[bool] = ..., keypoint_format: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ..., worker_count: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "ready", "size_multiple_px", "default_max_short_side_px", "default_steps", "default_image_guidance_scale", "default_pose_guidance_scale", "chunk_frames", "chunk_overlap_frames", "devices")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    SIZE_MULTIPLE_PX_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MAX_SHORT_SIDE_PX_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STEPS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_IMAGE_GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POSE_GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FRAMES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_OVERLAP_FRAMES_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    ready: bool
    size_multiple_px: int
    default_max_short_side_px: int
    default_steps: int
    default_image_guidance_scale: float
    default_pose_guidance_scale: float
    chunk_frames: int
    chunk_overlap_frames: int
    devices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., ready: _Optional[bool] = ..., size_multiple_px: _Optional[int] = ..., default_max_short_side_px: _Optional[int] = ..., default_steps: _Optional[int] = ..., default_image_guidance_scale: _Optional[float] = ..., default_pose_guidance_scale: _Optional[float] = ..., chunk_frames: _Optional[int] = ..., chunk_overlap_frames: _Optional[int] = ..., devices: _Optional[_Iterable[str]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_frames", "max_output_pixels", "max_reference_pixels", "max_upload_bytes", "max_message_bytes", "max_queued_jobs", "max_steps")
    MAX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_REFERENCE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    max_frames: int
    max_output_pixels: int
    max_reference_pixels: int
    max_upload_bytes: int
    max_message_bytes: int
    max_queued_jobs: int
    max_steps: int
    def __init__(self, max_frames: _Optional[int] = ..., max_output_pixels: _Optional[int] = ..., max_reference_pixels: _Optional[int] = ..., max_upload_bytes: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_queued_jobs: _Optional[int] = ..., max_steps: _Optional[int] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("client_request_id", "reference_image", "reference_image_asset_id", "reference_pose", "driving_poses", "driving_poses_asset_id", "width_px", "height_px", "fps", "seed", "steps", "image_guidance_scale", "pose_guidance_scale", "guidance_mode", "face_lightening", "alignment_mode", "chunk_plan", "priority", "image_pose_transfer", "lease_s", "prompt", "negative_prompt", "display_name", "head_lightening", "same_skeleton")
    CLIENT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGE_ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_POSE_FIELD_NUMBER: _ClassVar[int]
    DRIVING_POSES_FIELD_NUMBER: _ClassVar[int]
    DRIVING_POSES_ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    POSE_GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_MODE_FIELD_NUMBER: _ClassVar[int]
    FACE_LIGHTENING_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_MODE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_PLAN_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_POSE_TRANSFER_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    HEAD_LIGHTENING_FIELD_NUMBER: _ClassVar[int]
    SAME_SKELETON_FIELD_NUMBER: _ClassVar[int]
    client_request_id: str
    reference_image: bytes
    reference_image_asset_id: str
    reference_pose: ReferencePose
    driving_poses: PoseSequence
    driving_poses_asset_id: str
    width_px: int
    height_px: int
    fps: float
    seed: int
    steps: int
    image_guidance_scale: float
    pose_guidance_scale: float
    guidance_mode: GuidanceMode
    face_lightening: FaceLighteningMode
    alignment_mode: AlignmentMode
    chunk_plan: ChunkPlan
    priority: int
    image_pose_transfer: ImagePoseTransferMode
    lease_s: int
    prompt: str
    negative_prompt: str
    display_name: str
    head_lightening: bool
    same_skeleton: bool
    def __init__(self, client_request_id: _Optional[str] = ..., reference_image: _Optional[bytes] = ..., reference_image_asset_id: _Optional[str] = ..., reference_pose: _Optional[_Union[ReferencePose, _Mapping]] = ..., driving_poses: _Optional[_Union[PoseSequence, _Mapping]] = ..., driving_poses_asset_id: _Optional[str] = ..., width_px: _Optional[int] = ..., height_px: _Optional[int] = ..., fps: _Optional[float] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., image_guidance_scale: _Optional[float] = ..., pose_guidance_scale: _Optional[float] = ..., guidance_mode: _Optional[_Union[GuidanceMode, str]] = ..., face_lightening: _Optional[_Union[FaceLighteningMode, str]] = ..., alignment_mode: _Optional[_Union[AlignmentMode, str]] = ..., chunk_plan: _Optional[_Union[ChunkPlan, str]] = ..., priority: _Optional[int] = ..., image_pose_transfer: _Optional[_Union[ImagePoseTransferMode, str]] = ..., lease_s: _Optional[int] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., display_name: _Optional[str] = ..., head_lightening: _Optional[bool] = ..., same_skeleton: _Optional[bool] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    created: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class JobSettings(_message.Message):
    __slots__ = ("width_px", "height_px", "fps", "seed", "steps", "image_guidance_scale", "pose_guidance_scale", "guidance_mode", "face_lightening", "alignment_mode", "chunk_plan", "image_pose_transfer", "priority", "lease_s", "frame_count", "segment_count", "model_id", "head_lightening", "same_skeleton")
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    POSE_GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_MODE_FIELD_NUMBER: _ClassVar[int]
    FACE_LIGHTENING_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_MODE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_PLAN_FIELD_NUMBER: _ClassVar[int]
    IMAGE_POSE_TRANSFER_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    HEAD_LIGHTENING_FIELD_NUMBER: _ClassVar[int]
    SAME_SKELETON_FIELD_NUMBER: _ClassVar[int]
    width_px: int
    height_px: int
    fps: float
    seed: int
    steps: int
    image_guidance_scale: float
    pose_guidance_scale: float
    guidance_mode: GuidanceMode
    face_lightening: FaceLighteningMode
    alignment_mode: AlignmentMode
    chunk_plan: ChunkPlan
    image_pose_transfer: ImagePoseTransferMode
    priority: int
    lease_s: int
    frame_count: int
    segment_count: int
    model_id: str
    head_lightening: bool
    same_skeleton: bool
    def __init__(self, width_px: _Optional[int] = ..., height_px: _Optional[int] = ..., fps: _Optional[float] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., image_guidance_scale: _Optional[float] = ..., pose_guidance_scale: _Optional[float] = ..., guidance_mode: _Optional[_Union[GuidanceMode, str]] = ..., face_lightening: _Optional[_Union[FaceLighteningMode, str]] = ..., alignment_mode: _Optional[_Union[AlignmentMode, str]] = ..., chunk_plan: _Optional[_Union[ChunkPlan, str]] = ..., image_pose_transfer: _Optional[_Union[ImagePoseTransferMode, str]] = ..., priority: _Optional[int] = ..., lease_s: _Optional[int] = ..., frame_count: _Optional[int] = ..., segment_count: _Optional[int] = ..., model_id: _Optional[str] = ..., head_lightening: _Optional[bool] = ..., same_skeleton: _Optional[bool] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("code", "code_name", "message", "hint", "retryable")
    CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    code: int
    code_name: str
    message: str
    hint: str
    retryable: bool
    def __init__(self, code: _Optional[int] = ..., code_name: _Optional[str] = ..., message: _Optional[str] = ..., hint: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "client_request_id", "display_name", "state", "queue_position", "settings", "segments_done", "frames_done", "progress", "eta_s", "created_unix_ms", "started_unix_ms", "finished_unix_ms", "error", "cancel_requested", "last_event_sequence", "output_files", "resume_count")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FILES_FIELD_NUMBER: _ClassVar[int]
    RESUME_COUNT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    client_request_id: str
    display_name: str
    state: JobState
    queue_position: int
    settings: JobSettings
    segments_done: int
    frames_done: int
    progress: float
    eta_s: float
    created_unix_ms: int
    started_unix_ms: int
    finished_unix_ms: int
    error: JobError
    cancel_requested: bool
    last_event_sequence: int
    output_files: _containers.RepeatedCompositeFieldContainer[OutputFile]
    resume_count: int
    def __init__(self, job_id: _Optional[str] = ..., client_request_id: _Optional[str] = ..., display_name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., queue_position: _Optional[int] = ..., settings: _Optional[_Union[JobSettings, _Mapping]] = ..., segments_done: _Optional[int] = ..., frames_done: _Optional[int] = ..., progress: _Optional[float] = ..., eta_s: _Optional[float] = ..., created_unix_ms: _Optional[int] = ..., started_unix_ms: _Optional[int] = ..., finished_unix_ms: _Optional[int] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., cancel_requested: _Optional[bool] = ..., last_event_sequence: _Optional[int] = ..., output_files: _Optional[_Iterable[_Union[OutputFile, _Mapping]]] = ..., resume_count: _Optional[int] = ...) -> None: ...

class OutputFile(_message.Message):
    __slots__ = ("name", "size_bytes", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ("freed_bytes",)
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    freed_bytes: int
    def __init__(self, freed_bytes: _Optional[int] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_sequence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_sequence: int
    def __init__(self, job_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("sequence", "job_id", "time_unix_ms", "state_changed", "step_progress", "preview", "frame_ready", "heartbeat")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    STEP_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    FRAME_READY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    job_id: str
    time_unix_ms: int
    state_changed: StateChanged
    step_progress: StepProgress
    preview: Preview
    frame_ready: FrameReady
    heartbeat: Heartbeat
    def __init__(self, sequence: _Optional[int] = ..., job_id: _Optional[str] = ..., time_unix_ms: _Optional[int] = ..., state_changed: _Optional[_Union[StateChanged, _Mapping]] = ..., step_progress: _Optional[_Union[StepProgress, _Mapping]] = ..., preview: _Optional[_Union[Preview, _Mapping]] = ..., frame_ready: _Optional[_Union[FrameReady, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class StateChanged(_message.Message):
    __slots__ = ("state", "queue_position", "error", "message")
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    queue_position: int
    error: JobError
    message: str
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., queue_position: _Optional[int] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("segment_index", "segment_count", "step", "step_count", "pass_index", "pass_count", "progress", "eta_s", "step_time_s")
    SEGMENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEP_COUNT_FIELD_NUMBER: _ClassVar[int]
    PASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    PASS_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    STEP_TIME_S_FIELD_NUMBER: _ClassVar[int]
    segment_index: int
    segment_count: int
    step: int
    step_count: int
    pass_index: int
    pass_count: int
    progress: float
    eta_s: float
    step_time_s: float
    def __init__(self, segment_index: _Optional[int] = ..., segment_count: _Optional[int] = ..., step: _Optional[int] = ..., step_count: _Optional[int] = ..., pass_index: _Optional[int] = ..., pass_count: _Optional[int] = ..., progress: _Optional[float] = ..., eta_s: _Optional[float] = ..., step_time_s: _Optional[float] = ...) -> None: ...

class Preview(_message.Message):
    __slots__ = ("jpeg", "width_px", "height_px", "frame_index", "segment_index")
    JPEG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    jpeg: bytes
    width_px: int
    height_px: int
    frame_index: int
    segment_index: int
    def __init__(self, jpeg: _Optional[bytes] = ..., width_px: _Optional[int] = ..., height_px: _Optional[int] = ..., frame_index: _Optional[int] = ..., segment_index: _Optional[int] = ...) -> None: ...

class FrameReady(_message.Message):
    __slots__ = ("first_frame", "frame_count", "frames_done", "frames_total", "segment_index")
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    first_frame: int
    frame_count: int
    frames_done: int
    frames_total: int
    segment_index: int
    def __init__(self, first_frame: _Optional[int] = ..., frame_count: _Optional[int] = ..., frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., segment_index: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("state", "queue_position")
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    queue_position: int
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., queue_position: _Optional[int] = ...) -> None: ...

class AssetInfo(_message.Message):
    __slots__ = ("kind", "size_bytes", "sha256")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    kind: AssetKind
    size_bytes: int
    sha256: str
    def __init__(self, kind: _Optional[_Union[AssetKind, str]] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadAssetRequest(_message.Message):
    __slots__ = ("info", "data")
    INFO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    info: AssetInfo
    data: bytes
    def __init__(self, info: _Optional[_Union[AssetInfo, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadAssetResponse(_message.Message):
    __slots__ = ("asset_id", "info", "already_stored")
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    ALREADY_STORED_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    info: AssetInfo
    already_stored: bool
    def __init__(self, asset_id: _Optional[str] = ..., info: _Optional[_Union[AssetInfo, _Mapping]] = ..., already_stored: _Optional[bool] = ...) -> None: ...

class GetAssetRequest(_message.Message):
    __slots__ = ("asset_id",)
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    def __init__(self, asset_id: _Optional[str] = ...) -> None: ...

class GetAssetResponse(_message.Message):
    __slots__ = ("asset_id", "info")
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    info: AssetInfo
    def __init__(self, asset_id: _Optional[str] = ..., info: _Optional[_Union[AssetInfo, _Mapping]] = ...) -> None: ...

class DownloadFramesRequest(_message.Message):
    __slots__ = ("job_id", "kind", "first_frame", "frame_count", "max_chunk_bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: FrameKind
    first_frame: int
    frame_count: int
    max_chunk_bytes: int
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[_Union[FrameKind, str]] = ..., first_frame: _Optional[int] = ..., frame_count: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ...) -> None: ...

class DownloadFramesResponse(_message.Message):
    __slots__ = ("frame_index", "offset", "data", "total_size_bytes", "last_chunk", "sha256")
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_CHUNK_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    frame_index: int
    offset: int
    data: bytes
    total_size_bytes: int
    last_chunk: bool
    sha256: str
    def __init__(self, frame_index: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., total_size_bytes: _Optional[int] = ..., last_chunk: _Optional[bool] = ..., sha256: _Optional[str] = ...) -> None: ...

class DownloadFileRequest(_message.Message):
    __slots__ = ("job_id", "name", "offset", "limit", "max_chunk_bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    offset: int
    limit: int
    max_chunk_bytes: int
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ...) -> None: ...

class DownloadFileResponse(_message.Message):
    __slots__ = ("offset", "data", "total_size_bytes", "sha256")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    total_size_bytes: int
    sha256: str
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., total_size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...
