"""Bearer token on every RPC but health; TLS with a certificate made in the test; loopback by default."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import BASIC, TIMEOUT, basic_inputs, infer, tc
from tritonclient.utils import InferenceServerException

from onnxpipe_runtime.serve import ConfigError, Server, ServeOptions


def test_loopback_by_default():
    assert ServeOptions().host == "127.0.0.1"


def test_token_required_except_health():
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with Server({"basic": BASIC}, ServeOptions(port=0, token="s3cret", grace_s=1.0)) as s:
        anon = tc.InferenceServerClient(s.address)
        wrong = tc.InferenceServerClient(s.address)
        ok = tc.InferenceServerClient(s.address)
        try:
            for client, headers in ((anon, None), (wrong, {"authorization": "Bearer nope"})):
                with pytest.raises(InferenceServerException) as e:
                    client.is_server_live(headers=headers, client_timeout=TIMEOUT)
                assert e.value.status() == "StatusCode.UNAUTHENTICATED"
                assert "[UNAUTHENTICATED]" in e.value.message()
                with pytest.raises(InferenceServerException) as e:
                    infer(client, "basic", basic_inputs(1), headers=headers)
                assert e.value.status() == "StatusCode.UNAUTHENTICATED"
            good = {"authorization": "Bearer s3cret"}
            assert ok.is_server_live(headers=good, client_timeout=TIMEOUT)
            r = infer(ok, "basic", basic_inputs(1), headers=good)
            assert r.as_numpy("score").shape == (1, 3)
            with grpc.insecure_channel(s.address) as ch:  # probes need no secret
                resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            for c in (anon, wrong, ok):
                c.close()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    try:
        from cryptography import x509  # noqa: F401
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor the openssl CLI is available to make a test certificate")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=30,
        )
        return cert, key
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
         .sign(k, hashes.SHA256()))
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return cert, key


def test_tls(tmp_path):
    cert, key = _self_signed(tmp_path)
    with Server({"basic": BASIC}, ServeOptions(port=0, tls_cert=cert, tls_key=key, token="t", grace_s=1.0)) as s:
        c = tc.InferenceServerClient(f"localhost:{s.port}", ssl=True, root_certificates=str(cert))
        try:
            x = basic_inputs(2)
            r = infer(c, "basic", x, headers={"authorization": "Bearer t"})
            assert r.as_numpy("label_id").shape == (2,)
        finally:
            c.close()
        plain = tc.InferenceServerClient(f"localhost:{s.port}")
        try:
            with pytest.raises(InferenceServerException):
                plain.is_server_live(client_timeout=5.0)
        finally:
            plain.close()


@pytest.mark.parametrize("options,needle", [
    (ServeOptions(port=0, tls_cert=Path("c.pem")), "--tls-cert and --tls-key go together"),
    (ServeOptions(port=0, max_batch=0), "--max-batch"),
    (ServeOptions(port=0, token=""), "--token"),
    (ServeOptions(port=0, tls_cert=Path("/nonexistent/c.pem"), tls_key=Path("/nonexistent/k.pem")), "cannot read it"),
])
def test_bad_options(options, needle):
    with pytest.raises(ConfigError) as e:
        Server({"basic": BASIC}, options).start().stop(0)
    assert needle in str(e.value)


def test_port_in_use_is_an_error():
    with Server({"basic": BASIC}, ServeOptions(port=0, grace_s=0.5)) as s:
        with pytest.raises(ConfigError) as e:
            Server({"basic": BASIC}, ServeOptions(port=s.port)).start()
        assert f"127.0.0.1:{s.port}" in str(e.value)
        assert np.isfinite(infer(tc.InferenceServerClient(s.address), "basic", basic_inputs(1)).as_numpy("score")).all()
