"""A local HTTPS endpoint standing in for CloudFormation's presigned S3 ResponseURL.

crhelper always PUTs over HTTPS, so the receiver serves TLS with a throwaway certificate; the
caller trusts it through ``SSL_CERT_FILE`` (read by OpenSSL each time a context is created).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: Fake signature carried by every URL, so tests can prove it never reaches a log line.
SIGNATURE = "c2lnbmF0dXJlLW11c3QtbmV2ZXItYmUtbG9nZ2Vk"


def write_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "receiver-cert.pem"
    key_path = directory / "receiver-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class ResponseReceiver:
    """Collects the response bodies PUT to it; ``url()`` makes a presigned-looking URL."""

    def __init__(self, directory: Path | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory() if directory is None else None
        self.directory = Path(self._tmp.name) if self._tmp else Path(directory or ".")
        self.cafile, keyfile = write_certificate(self.directory)
        self._received: list[dict[str, Any]] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                body["_path"] = unquote(self.path.split("?", 1)[0])
                with receiver._arrived:
                    receiver._received.append(body)
                    receiver._arrived.notify_all()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002
                return  # the URL carries the fake signature: never print it

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cafile, keyfile)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        # A short poll interval: shutdown() waits for the serving loop to notice (0.5 s default).
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, request_id: str) -> str:
        """A presigned-looking URL; the RequestId is escaped, as S3 keys in real URLs are."""
        key = quote(request_id, safe="")
        return (
            f"https://localhost:{self.port}/cloudformation-custom-resource-response/{key}"
            f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=7200&X-Amz-Signature={SIGNATURE}"
        )

    def _index(self, request_id: str | None) -> int | None:
        for i, body in enumerate(self._received):
            if request_id is None or body.get("RequestId") == request_id:
                return i
        return None

    def take(self, request_id: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """The next response (for ``request_id``, if given), waiting up to ``timeout`` seconds."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._index(request_id) is not None, timeout):
                raise TimeoutError(f"no response for {request_id or 'any request'} in {timeout} s")
            index = self._index(request_id)
            assert index is not None
            return self._received.pop(index)

    @property
    def pending(self) -> int:
        """Responses received and not taken: more than one per request would be a bug."""
        with self._arrived:
            return len(self._received)

    def __enter__(self) -> ResponseReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._tmp:
            self._tmp.cleanup()
