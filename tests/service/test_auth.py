"""Bearer token, TLS and mutual TLS against real servers, through the client class and the CLI.

Certificates are made per session by tests/certificates.py. Every failing call must fail with a
clear code within seconds (never hang), and the token must never show in logs or error messages.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from heatmap_client import HeatmapClient, HeatmapError

from certificates import Certificates, make_certificates
from live_server import LiveServer, running_server
from probes import free_port, scrape, wait_for

KEYPOINTS = np.array([[[3.0, 4.0], [10.0, 2.0]]], dtype=np.float32)
# A failed handshake or a missing token must be reported this fast (retries included).
PROMPT_S = 10.0


def _render(client: HeatmapClient):
    return client.render(KEYPOINTS, size=(16, 16), sigma=2.0)


def _cli(*args: str) -> subprocess.CompletedProcess:
    # python -m rather than the console script: the same code, also where nothing is installed.
    return subprocess.run([sys.executable, "-m", "heatmap_client", *args], capture_output=True,
                          text=True, timeout=60)


def _fails_promptly(call, code: grpc.StatusCode) -> HeatmapError:
    started = time.monotonic()
    with pytest.raises(HeatmapError) as caught:
        call()
    assert time.monotonic() - started < PROMPT_S
    assert caught.value.code == code, caught.value
    return caught.value


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


# --- bearer token -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token() -> str:
    return "tok-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory, token) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(token + "\n")
    return path


@pytest.fixture(scope="module")
def token_server(token_file) -> LiveServer:
    port = free_port()
    with running_server("--auth-token-file", str(token_file), "--log-level", "DEBUG",
                        "--metrics-port", str(port)) as server:
        server.metrics_port = port
        yield server


def test_the_right_token_is_let_through(token_server, token):
    with HeatmapClient(token_server.target, timeout=30, token=token) as client:
        assert _render(client).heatmaps.shape == (1, 2, 16, 16)
        assert client.info().version
        requests = [dict(keypoints=KEYPOINTS, size=(8, 8), sigma=1.0)] * 3
        assert len(list(client.render_many(requests))) == 3


@pytest.mark.parametrize("given", [None, "wrong", ""], ids=["no token", "wrong token", "empty"])
def test_a_missing_or_wrong_token_is_unauthenticated(token_server, token, given):
    with HeatmapClient(token_server.target, timeout=30, token=given) as client:
        for call in (lambda: _render(client), client.info,
                     lambda: list(client.render_many([dict(keypoints=KEYPOINTS, size=(8, 8),
                                                           sigma=1.0)]))):
            error = _fails_promptly(call, grpc.StatusCode.UNAUTHENTICATED)
            assert token not in str(error) and token not in error.message


def test_refused_calls_are_counted_as_unauthenticated(token_server):
    def refused() -> float:
        return scrape(token_server.metrics_port).value(
            "heatmap_requests_total", rpc="RenderUnary", code="UNAUTHENTICATED")

    before = refused()
    with HeatmapClient(token_server.target, timeout=30, token="nope") as client:
        for _ in range(2):
            with pytest.raises(HeatmapError):
                _render(client)
    assert wait_for(lambda: refused() == before + 2)


def test_a_token_for_another_scheme_or_with_extra_text_is_refused(token_server, token):
    with grpc.insecure_channel(token_server.target) as channel:
        info = channel.unary_unary("/heatmap.v1.HeatmapRenderer/GetServerInfo",
                                   request_serializer=None, response_deserializer=None)
        for value in (token, f"Basic {token}", f"Bearer {token}x", f"Bearer  {token}"):
            with pytest.raises(grpc.RpcError) as caught:
                info(b"", timeout=10, metadata=(("authorization", value),))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert token not in caught.value.details()
        assert info(b"", timeout=10, metadata=(("authorization", f"Bearer {token}"),)) is not None


def test_health_stays_open_without_a_token(token_server):
    with HeatmapClient(token_server.target, timeout=30) as client:
        assert client.health() == "SERVING"
        assert client.health("heatmap.v1.HeatmapRenderer") == "SERVING"


def test_the_cli_reads_the_token_file(token_server, token_file, token):
    done = _cli("--target", token_server.target, "--token-file", str(token_file), "info")
    assert done.returncode == 0, done.stderr
    refused = _cli("--target", token_server.target, "info")
    assert refused.returncode == 2 and "UNAUTHENTICATED" in refused.stderr
    assert token not in refused.stderr + refused.stdout


def test_the_token_never_appears_in_the_server_log(token_server, token):
    # Runs after the calls above (file order): the log holds their DEBUG and INFO lines.
    with HeatmapClient(token_server.target, timeout=30, token=token + "-wrong") as client:
        with pytest.raises(HeatmapError):
            client.info()
    assert any("token required" in line for line in token_server.lines)
    assert token not in token_server.log


def test_a_tls_client_cannot_reach_a_plaintext_server(token_server, certificates):
    with HeatmapClient(token_server.target, timeout=30, tls_ca=certificates.ca) as client:
        _fails_promptly(client.health, grpc.StatusCode.UNAVAILABLE)


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(certificates) -> LiveServer:
    with running_server("--tls-cert", str(certificates.server_cert),
                        "--tls-key", str(certificates.server_key)) as server:
        yield server


def test_tls_round_trip(tls_server, certificates):
    assert any("TLS" in line for line in tls_server.lines if "listening on" in line)
    with HeatmapClient(tls_server.target, timeout=30, tls_ca=certificates.ca) as client:
        assert client.health() == "SERVING"
        result = _render(client)
        assert result.heatmaps.shape == (1, 2, 16, 16) and result.heatmaps.max() == 1.0


def test_a_plaintext_client_against_tls_fails_cleanly(tls_server):
    with HeatmapClient(tls_server.target, timeout=30) as client:
        _fails_promptly(lambda: _render(client), grpc.StatusCode.UNAVAILABLE)
        _fails_promptly(client.health, grpc.StatusCode.UNAVAILABLE)


def test_a_client_that_trusts_another_ca_fails_cleanly(tls_server, tmp_path):
    other = make_certificates(tmp_path / "other")
    with HeatmapClient(tls_server.target, timeout=30, tls_ca=other.ca) as client:
        _fails_promptly(lambda: _render(client), grpc.StatusCode.UNAVAILABLE)


def test_the_cli_speaks_tls(tls_server, certificates):
    done = _cli("--target", tls_server.target, "--tls-ca", str(certificates.ca), "health")
    assert done.returncode == 0 and done.stdout.strip() == "SERVING", done.stderr
    plain = _cli("--target", tls_server.target, "--timeout", "5", "health")
    assert plain.returncode == 1 and "UNAVAILABLE" in plain.stderr


# --- mutual TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mtls_server(certificates) -> LiveServer:
    with running_server("--tls-cert", str(certificates.server_cert),
                        "--tls-key", str(certificates.server_key),
                        "--tls-client-ca", str(certificates.ca)) as server:
        yield server


def test_mutual_tls_round_trip(mtls_server, certificates):
    with HeatmapClient(mtls_server.target, timeout=30, tls_ca=certificates.ca,
                       tls_cert=certificates.client_cert,
                       tls_key=certificates.client_key) as client:
        assert client.health() == "SERVING"
        assert _render(client).heatmaps.shape == (1, 2, 16, 16)


def test_a_tls_client_without_a_certificate_is_refused_by_mutual_tls(mtls_server, certificates):
    with HeatmapClient(mtls_server.target, timeout=30, tls_ca=certificates.ca) as client:
        error = _fails_promptly(lambda: _render(client), grpc.StatusCode.UNAVAILABLE)
        assert "Traceback" not in error.message


def test_a_client_certificate_from_another_ca_is_refused(mtls_server, certificates, tmp_path):
    other = make_certificates(tmp_path / "other")
    with HeatmapClient(mtls_server.target, timeout=30, tls_ca=certificates.ca,
                       tls_cert=other.client_cert, tls_key=other.client_key) as client:
        _fails_promptly(lambda: _render(client), grpc.StatusCode.UNAVAILABLE)


def test_the_cli_speaks_mutual_tls(mtls_server, certificates):
    done = _cli("--target", mtls_server.target, "--tls-ca", str(certificates.ca),
                "--tls-cert", str(certificates.client_cert),
                "--tls-key", str(certificates.client_key), "info")
    assert done.returncode == 0, done.stderr
    assert '"device"' in done.stdout
