"""TLS: a private redis-server that speaks only TLS and wants client certificates."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from urllib.parse import quote

import anyio
import pytest
from needs import unavailable

from stateward import RAS, RemoteError, ResultCode, Set, open_state
from stateward.remote import connect_redis, serve_redis

from .redislib import RedisProcess

pytestmark = pytest.mark.anyio

NAME = "jobs"


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(directory, name: str) -> dict[str, str]:
    """A CA, and a certificate it signs for the server and one for a client."""
    if shutil.which("openssl") is None:
        unavailable("openssl is not installed (apt-get install openssl)")
    d = directory
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={name} test CA", "-keyout", "ca.key", "-out", "ca.crt",
             cwd=d)  # fmt: skip
    for who, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=worker")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                 "-keyout", f"{who}.key", "-out", f"{who}.csr", cwd=d)  # fmt: skip
        (d / f"{who}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt",
                 "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                 "-extfile", f"{who}.ext", "-out", f"{who}.crt", cwd=d)  # fmt: skip
    return {k: str(d / f) for k, f in (
        ("ca", "ca.crt"), ("cert", "server.crt"), ("key", "server.key"),
        ("client_cert", "client.crt"), ("client_key", "client.key"),
    )}  # fmt: skip


@pytest.fixture
def tls_redis(tmp_path_factory):
    certs = _certificates(tmp_path_factory.mktemp("certs"), "stateward")
    server = RedisProcess(tmp_path_factory.mktemp("redis"), tls=certs)
    try:
        yield server, certs
    finally:
        server.stop()


def _url(server, ca, cert=None, key=None):
    query = f"ssl_ca_certs={quote(ca)}"
    if cert is not None:
        query += f"&ssl_certfile={quote(cert)}&ssl_keyfile={quote(key)}"
    return f"{server.url}?{query}"


async def test_the_whole_flow_runs_over_tls_with_client_certificates(tls_redis):
    server, certs = tls_redis
    url = _url(server, certs["ca"], certs["client_cert"], certs["client_key"])
    with anyio.fail_after(30):
        async with (
            open_state({}) as state,
            serve_redis(state, url, name=NAME),
            connect_redis(url, name=NAME) as remote,
        ):
            await remote.subscribe("", lambda e: RAS.SUCCESS, name="dash")
            receipt = await remote.send(Set("a", 1))
            assert (await receipt.acks(10)).result is ResultCode.ALL_SUBS_SUCCESS
            assert await remote.get("a") == 1
            feed = remote.watch("a", from_revision=0)
            async with contextlib.aclosing(feed) as events:
                async for event in events:
                    assert event.new_value == 1
                    break


async def test_tls_without_a_client_certificate_or_trust_is_a_typed_error(tls_redis):
    server, certs = tls_redis
    other = _certificates(server.directory, "other")  # a CA the server never saw
    refused = [
        _url(server, certs["ca"]),  # no client certificate
        _url(server, other["ca"], certs["client_cert"], certs["client_key"]),
        _url(server, certs["ca"], other["client_cert"], other["client_key"]),
        server.url.replace("rediss://", "redis://"),  # plain text to a TLS port
    ]
    for url in refused:
        with anyio.fail_after(30), pytest.raises(RemoteError):
            async with connect_redis(url, name=NAME):
                pass
