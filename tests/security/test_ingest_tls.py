"""The guarded connections speak TLS like yt-dlp's own: the certificate is verified for the URL's
host, and the watchdog can still stop a download whose socket is wrapped in TLS."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.config import Settings
from infra.media.download import DownloadError, fetch_source
from tests.security.servers import LoopbackServer, make_video, serving
from tests.security.test_ingest_limits import trickle

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return d / "cert.pem", d / "key.pem"


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[LoopbackServer]:
    with serving() as server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        yield server


def _https(server: LoopbackServer, path: str) -> str:
    return f"https://127.0.0.1:{server.port}{path}"


def test_https_is_verified_and_fetched_through_the_guard(
    tls_server: LoopbackServer,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tls_server.routes["/video.mp4"] = make_video(tmp_path / "v.mp4").read_bytes()
    settings = Settings(home=tmp_path / "home", download_test_public_endpoints=tls_server.endpoint)
    with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted yet
        fetch_source(_https(tls_server, "/video.mp4"), tmp_path / "untrusted", settings)

    from yt_dlp.dependencies import certifi

    monkeypatch.setattr(certifi, "where", lambda: str(certificate[0]))
    got = fetch_source(_https(tls_server, "/video.mp4"), tmp_path / "dl", settings)
    assert got.info.frame_count == 48
    refused = Settings(home=tmp_path / "home")  # the same server, not made public: refused
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1 \(loopback\), which is not allowed"):
        fetch_source(_https(tls_server, "/video.mp4"), tmp_path / "refused", refused)


def test_the_watchdog_stops_a_trickle_over_tls(
    tls_server: LoopbackServer,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from yt_dlp.dependencies import certifi

    monkeypatch.setattr(certifi, "where", lambda: str(certificate[0]))
    tls_server.routes["/video.mp4"] = trickle(b"x" * 10, 0.1, 10_000_000)  # type: ignore[assignment]
    settings = Settings(
        home=tmp_path / "home",
        download_test_public_endpoints=tls_server.endpoint,
        download_min_rate=1000.0,
        download_min_rate_window=1.0,
    )
    started = time.monotonic()
    with pytest.raises(DownloadError, match="download too slow"):
        fetch_source(_https(tls_server, "/video.mp4"), tmp_path / "dl", settings)
    assert time.monotonic() - started < 10
