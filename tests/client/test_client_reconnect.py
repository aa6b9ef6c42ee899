"""A watch that outlives its server: kill -9 the server mid-job, restart it on the same port and data folder; the
client's watch re-connects with backoff and resumes after the last event it saw, losing and repeating nothing."""

from __future__ import annotations

import threading
import time

from client_helpers import SERVER_ARGS, png_size, shot

from blender_addon.client._generated import render_service_pb2 as pb
from blender_addon.client.api import RenderClient
from o2a_demo.server_process import ServerProcess


def test_watch_resumes_across_server_crash(tmp_path):
    server = ServerProcess(tmp_path / "data", extra_args=SERVER_ARGS, log_path=tmp_path / "server.log").start()
    try:
        with RenderClient(server.address, backoff_initial_s=0.1, backoff_max_s=1.0) as client:
            poses, ref, ref_pose, options = shot(13, steps=12)  # still running when the server is killed
            job = client.submit_shot(poses, ref, ref_pose, options).job
            events, reconnects, errors = [], [], []
            first_step = threading.Event()

            def follow():
                try:
                    for event in client.watch(job.job_id, on_reconnect=lambda *a: reconnects.append(a)):
                        events.append(event)
                        if event.HasField("step_progress"):
                            first_step.set()
                except Exception as exc:  # reported to the test thread below
                    errors.append(exc)

            thread = threading.Thread(target=follow)
            thread.start()
            assert first_step.wait(120), f"no progress before the crash\n{server.log_tail()}"
            server.kill()
            seen_at_crash = len(events)
            time.sleep(1.0)
            server.start()  # same port, same data folder: the job resumes from its last finished segment
            thread.join(240)
            assert not thread.is_alive() and not errors, errors
            assert reconnects, "the stream never dropped"
            seqs = [e.sequence for e in events]
            assert seqs == list(range(1, len(seqs) + 1)), f"lost or duplicated events: {seqs}"
            assert len(events) > seen_at_crash
            assert events[-1].state_changed.state == pb.JOB_STATE_SUCCEEDED
            replay = [e.SerializeToString() for e in client.watch(job.job_id)]
            assert replay == [e.SerializeToString() for e in events]
            final = client.get_job(job.job_id)
            assert final.resume_count >= 1
            paths = client.download_frames(job.job_id, tmp_path / "frames")
            assert len(paths) == 13 and png_size(paths[-1]) == (32, 48)
    finally:
        server.stop(grace_s=5)
