"""The client over TLS with a bearer token (a throwaway self-signed certificate), and the typed errors for missing
or wrong credentials, through the library and the CLI."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from client_helpers import SERVER_ARGS, shot

from blender_addon.client._generated import render_service_pb2 as pb
from blender_addon.client.api import RenderClient
from blender_addon.client.errors import ServerUnavailable, Unauthenticated
from o2a_demo.server_process import ServerProcess

REPO = Path(__file__).resolve().parents[2]
TOKEN = "client-test-token-0123456789"


def _self_signed() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "render-box")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("render-box"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed()
    (root / "cert.pem").write_bytes(cert)
    (root / "key.pem").write_bytes(key)
    (root / "tokens").write_text(f"# test tokens\n{TOKEN}\n")
    proc = ServerProcess(root / "data", log_path=root / "server.log", probe_options={"tls": True, "ca_cert": cert},
                         extra_args=(*SERVER_ARGS, "--token-file", str(root / "tokens"),
                                     "--tls-cert", str(root / "cert.pem"), "--tls-key", str(root / "key.pem")))
    proc.start()
    yield proc, root, cert
    proc.stop(grace_s=5)


def test_tls_token_round_trip_and_auth_errors(tls_server, tmp_path):
    proc, root, cert = tls_server
    with RenderClient(proc.address, tls=True, ca_cert=cert, token=TOKEN) as client:
        client.wait_ready(60)
        assert client.capabilities().model.model_id == "tiny"
        poses, ref, ref_pose, options = shot(1)
        job = client.submit_shot(poses, ref, ref_pose, options).job
        assert client.wait(job.job_id).state == pb.JOB_STATE_SUCCEEDED
        assert len(client.download_frames(job.job_id, tmp_path)) == 1
    with RenderClient(f"grpcs://{proc.address}", ca_cert=cert, token="wrong") as client:
        client.wait_ready(10)  # health is exempt from auth (load balancers probe it without secrets)
        with pytest.raises(Unauthenticated) as info:
            client.capabilities()
        assert "token" in str(info.value)
    with RenderClient(proc.address, tls=True, ca_cert=cert) as client:
        with pytest.raises(Unauthenticated):
            list(client.watch(job.job_id))
    with RenderClient(proc.address, token=TOKEN, timeout_s=3, retries=0) as client:  # plaintext to a TLS port
        with pytest.raises(ServerUnavailable):
            client.capabilities()

    env = {**os.environ, "PYTHONPATH": str(REPO), "O2A_TOKEN": TOKEN}
    base = [sys.executable, "-m", "blender_addon.client.cli", "--server", proc.address,
            "--ca-cert", str(root / "cert.pem")]
    ok = subprocess.run([*base, "status", job.job_id], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0 and "SUCCEEDED" in ok.stdout, ok.stderr
    assert TOKEN not in ok.stdout + ok.stderr
    env["O2A_TOKEN"] = "nope"
    denied = subprocess.run([*base, "status", job.job_id], capture_output=True, text=True, env=env, timeout=60)
    assert denied.returncode == 4 and "UNAUTHENTICATED" in denied.stderr and "nope" not in denied.stderr
