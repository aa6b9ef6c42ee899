"""32 concurrent clients submitting and watching (no lost or duplicated job or event); bearer-token auth; TLS
round trip with a throwaway certificate; non-loopback listening without a token refused; metrics endpoint."""

from __future__ import annotations

import datetime
import ipaddress
import threading
import urllib.request

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from render_server._generated import render_service_pb2 as pb
from render_server._generated import render_service_pb2_grpc as pb_grpc
from render_server.main import main as server_main
from render_server.service.server import ConfigError, ServerConfig

from service_helpers import make_app, submit_request, watch_all

CLIENTS = 32


def test_32_concurrent_clients_lose_and_duplicate_nothing(app):
    results: dict[int, tuple[str, list[pb.JobEvent]]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(CLIENTS)

    def client(i: int) -> None:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                stub = pb_grpc.RenderServiceStub(channel)
                barrier.wait(timeout=60)
                # Every client retries its submit once (same request id): idempotency under concurrency.
                request = submit_request(frames=1, steps=1, seed=i, client_request_id=f"client-{i}")
                job_id = stub.SubmitJob(request, timeout=60).job.job_id
                assert stub.SubmitJob(request, timeout=60).job.job_id == job_id
                results[i] = (job_id, watch_all(stub, job_id, timeout_s=600))
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    assert not errors, errors[:3]
    assert len(results) == CLIENTS
    job_ids = [job_id for job_id, _ in results.values()]
    assert len(set(job_ids)) == CLIENTS, "a job was lost or shared between clients"
    with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        listed = [j.job_id for j in stub.ListJobs(pb.ListJobsRequest(page_size=1000), timeout=10).jobs]
        assert sorted(set(listed) & set(job_ids)) == sorted(job_ids) and len(listed) == len(set(listed))
        for job_id, events in results.values():
            job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job
            assert job.state == pb.JOB_STATE_SUCCEEDED
            # Every stored event arrived exactly once, in order.
            assert [e.sequence for e in events] == list(range(1, job.last_event_sequence + 1))
            assert all(e.job_id == job_id for e in events)


# -- auth -------------------------------------------------------------------------------------------------------

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory):
    server = make_app(tmp_path_factory.mktemp("auth"), server=ServerConfig(listen="127.0.0.1:0", tokens=(TOKEN,)))
    server.start()
    assert server.wait_ready(120)
    yield server
    server.stop(grace_s=0.5)


@pytest.mark.parametrize("metadata", [None, (("authorization", "Bearer wrong"),), (("authorization", TOKEN),),
                                      (("authorization", "Basic " + TOKEN),)])
def test_missing_or_wrong_token_is_unauthenticated(auth_app, metadata):
    with grpc.insecure_channel(f"127.0.0.1:{auth_app.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetCapabilities(pb.GetCapabilitiesRequest(), metadata=metadata, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:  # streaming calls too
            list(stub.WatchJob(pb.WatchJobRequest(job_id="job-" + "0" * 32), metadata=metadata, timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_right_token_is_served_and_health_needs_none(auth_app):
    with grpc.insecure_channel(f"127.0.0.1:{auth_app.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        caps = stub.GetCapabilities(pb.GetCapabilitiesRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),),
                                    timeout=10)
        assert caps.protocol_version == "one_to_all.v1"
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING


def test_token_never_reaches_the_logs_or_the_store(auth_app, caplog):
    with grpc.insecure_channel(f"127.0.0.1:{auth_app.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        md = (("authorization", f"Bearer {TOKEN}"),)
        job_id = stub.SubmitJob(submit_request(frames=1), metadata=md, timeout=30).job.job_id
        watch_all_md = list(stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=md, timeout=120))
        assert watch_all_md
        with pytest.raises(grpc.RpcError):
            stub.GetCapabilities(pb.GetCapabilitiesRequest(), metadata=(("authorization", "Bearer " + TOKEN + "x"),))
    assert TOKEN not in caplog.text
    data_dir = auth_app.config.data_dir
    for path in data_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert TOKEN.encode() not in path.read_bytes(), path


def test_non_loopback_listen_without_token_is_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="token"):
        make_app(tmp_path / "a", server=ServerConfig(listen="0.0.0.0:0"))
    # The CLI refuses too, with a clear message and exit status 2.
    assert server_main(["--model", "tiny", "--device", "cpu", "--listen", "0.0.0.0:0",
                        "--data-dir", str(tmp_path / "b")]) == 2
    assert "token" in capsys.readouterr().err


# -- TLS --------------------------------------------------------------------------------------------------------


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_tls_round_trip_with_token(tmp_path):
    cert, key = _self_signed()
    server = make_app(tmp_path / "tls", server=ServerConfig(listen="127.0.0.1:0", tokens=(TOKEN,), tls_cert=cert,
                                                              tls_key=key)).start()
    try:
        assert server.wait_ready(120)
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(root_certificates=cert), grpc.access_token_call_credentials(TOKEN))
        with grpc.secure_channel(f"localhost:{server.port}", credentials) as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            job_id = stub.SubmitJob(submit_request(frames=1), timeout=30).job.job_id
            assert watch_all(stub, job_id)[-1].state_changed.state == pb.JOB_STATE_SUCCEEDED
        # A plaintext client cannot talk to the TLS port.
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.RenderServiceStub(channel).GetCapabilities(pb.GetCapabilitiesRequest(), timeout=5)
            assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        server.stop(grace_s=0.5)


# -- metrics ----------------------------------------------------------------------------------------------------


def test_prometheus_metrics_endpoint(tmp_path):
    server = make_app(tmp_path / "m", metrics_port=0).start()
    try:
        assert server.wait_ready(120)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            job_id = stub.SubmitJob(submit_request(frames=1), timeout=30).job.job_id
            watch_all(stub, job_id)
        port = server.metrics.port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        for name in ("o2a_queue_length", "o2a_job_duration_seconds_count", "o2a_step_seconds_count",
                     "o2a_device_memory_bytes", "o2a_jobs_finished_total"):
            assert name in text, name
        assert 'o2a_jobs_finished_total{state="SUCCEEDED"} 1.0' in text
    finally:
        server.stop(grace_s=0.5)
