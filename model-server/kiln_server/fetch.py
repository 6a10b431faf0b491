"""Fetch a model artifact by URI and verify its sha256 before anyone loads it.

Schemes: a plain path or ``file://`` (local), ``pvc://<claim>/<path>`` (the claim mounted at
``<pvc_root>/<claim>``, default root ``/mnt/pvc``), ``http://``/``https://`` (streamed), and
``s3://<bucket>/<key>`` with the ``s3`` extra (boto3; ``AWS_ENDPOINT_URL`` selects any
S3-compatible store). Downloads land in a temporary file next to the destination and are
renamed into place only once the digest matches. A file with no registered digest (a
baseline may have none) is fetched the same way, unverified; ``kiln-server fetch`` warns.

Credentials come from the environment, so a pod gets them from a Secret (``envFrom``):
``KILN_FETCH_AUTHORIZATION`` is sent as the ``Authorization`` header of http(s) requests
(e.g. ``Bearer <token>``); s3 uses boto3's usual ``AWS_*`` variables.

A failure that may pass (a refused or dropped connection, a timeout, HTTP 408, 429 or 5xx)
is retried with exponential backoff, ``attempts`` times in all, before it is reported;
others (404, 403, a wrong digest) are reported at once.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import BinaryIO, Final, TypeVar
from urllib.parse import urlsplit

DEFAULT_PVC_ROOT = "/mnt/pvc"
_CHUNK = 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HTTP_TIMEOUT_SECONDS = 60
#: Attempts at a remote fetch whose failure may pass, and the first pause between them
#: (doubling after each attempt).
DEFAULT_ATTEMPTS: Final = 4
FIRST_RETRY_DELAY_SECONDS: Final = 0.5
#: HTTP statuses that say "try again later" rather than "no".
_TRANSIENT_HTTP: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
AUTHORIZATION_ENV: Final = "KILN_FETCH_AUTHORIZATION"

T = TypeVar("T")


class FetchError(Exception):
    """The artifact cannot be fetched, or its digest is not the expected one.

    ``transient`` marks a failure that may pass if tried again (the connection, a timeout,
    a busy server); a missing object or a refusal is not.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class DigestMismatch(FetchError):
    """The bytes fetched are not the ones the digest names."""


def normalise_digest(sha256: str) -> str:
    digest = sha256.strip().lower().removeprefix("sha256:")
    if not _HEX64.match(digest):
        raise FetchError(f"--sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return digest


def local_path(uri: str, pvc_root: str = DEFAULT_PVC_ROOT) -> str | None:
    """The filesystem path of a local URI (path, file://, pvc://), or None if remote."""
    parts = urlsplit(uri)
    if parts.scheme == "":
        return uri
    if parts.scheme == "file":
        return parts.path
    if parts.scheme == "pvc":
        if not parts.netloc or not parts.path.strip("/"):
            raise FetchError(f"pvc URI must be pvc://<claim>/<path>, got {uri!r}")
        claim_root = os.path.normpath(os.path.join(pvc_root, parts.netloc))
        path = os.path.normpath(os.path.join(claim_root, parts.path.lstrip("/")))
        if os.path.dirname(claim_root) != os.path.normpath(pvc_root) or not path.startswith(
            claim_root + os.sep
        ):
            raise FetchError(f"pvc URI {uri!r} points outside its claim")
        return path
    return None


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check(uri: str, expected: str | None, actual: str) -> None:
    if expected is not None and actual != expected:
        raise DigestMismatch(f"sha256 mismatch for {uri}: expected {expected}, got {actual}")


def with_retries(
    attempt: Callable[[], T],
    attempts: int = DEFAULT_ATTEMPTS,
    first_delay: float = FIRST_RETRY_DELAY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``attempt()``, again after a pause while it fails transiently, ``attempts`` times in
    all; the last failure says how many attempts were made."""
    delay = first_delay
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except FetchError as error:
            if not error.transient:
                raise
            if number == attempts:
                suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
                raise FetchError(f"{error}{suffix}", transient=True) from error
        sleep(delay)
        delay *= 2
    raise AssertionError("unreachable: the last attempt returns or raises")


def _http_request(uri: str) -> urllib.request.Request:
    request = urllib.request.Request(uri)
    authorization = os.environ.get(AUTHORIZATION_ENV)
    if authorization:
        request.add_header("Authorization", authorization)
    return request


def _http_chunks(uri: str) -> Iterator[bytes]:
    try:
        with urllib.request.urlopen(_http_request(uri), timeout=_HTTP_TIMEOUT_SECONDS) as response:
            yield from iter(lambda: response.read(_CHUNK), b"")
    except urllib.error.HTTPError as error:
        raise FetchError(
            f"GET {uri} answered HTTP {error.code} {error.reason}",
            transient=error.code in _TRANSIENT_HTTP,
        ) from error
    except (urllib.error.URLError, OSError) as error:
        raise FetchError(f"GET {uri} failed: {error}", transient=True) from error


def _s3_chunks(uri: str) -> Iterator[bytes]:
    try:
        import boto3
        import botocore.exceptions
    except ImportError as error:
        raise FetchError("s3:// URIs need the 's3' extra (pip install 'kiln[s3]')") from error
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise FetchError(f"s3 URI must be s3://<bucket>/<key>, got {uri!r}")
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        yield from body.iter_chunks(_CHUNK)
    except botocore.exceptions.BotoCoreError as error:
        # No answer (endpoint unreachable, timeout, credentials missing): may pass.
        raise FetchError(f"s3 GET {uri} failed: {error}", transient=True) from error
    except botocore.exceptions.ClientError as error:
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        raise FetchError(
            f"s3 GET {uri} failed: {error}", transient=status in _TRANSIENT_HTTP
        ) from error


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as source:
        yield from iter(lambda: source.read(_CHUNK), b"")


def _remote_chunks(uri: str) -> Iterator[bytes]:
    scheme = urlsplit(uri).scheme
    if scheme in ("http", "https"):
        return _http_chunks(uri)
    if scheme == "s3":
        return _s3_chunks(uri)
    raise FetchError(
        f"unsupported URI scheme {scheme!r} in {uri!r}; use a path, file://, pvc://, "
        "http(s):// or s3://"
    )


def _stream_into(target: BinaryIO, chunks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest()


def fetch(
    uri: str,
    sha256: str | None,
    dest_dir: str,
    filename: str = "model.onnx",
    *,
    pvc_root: str = DEFAULT_PVC_ROOT,
    attempts: int = DEFAULT_ATTEMPTS,
) -> str:
    """Put the verified artifact at ``dest_dir/filename`` and return that path (``sha256``
    None: a file with no registered digest, such as an unpinned baseline)."""
    expected = normalise_digest(sha256) if sha256 is not None else None
    os.makedirs(dest_dir, exist_ok=True)
    destination = os.path.join(dest_dir, filename)
    source = local_path(uri, pvc_root)
    if source is not None:
        if not os.path.isfile(source):
            raise FetchError(f"{uri}: no such file {source}")
        if os.path.abspath(source) == os.path.abspath(destination):
            _check(uri, expected, file_sha256(source))
            return destination
    # Local copies take the same path as downloads: the digest is of the bytes written, and
    # the destination appears only once they are verified.
    if source is not None:
        return _copy_verified(_file_chunks(source), uri, expected, destination)
    return with_retries(
        lambda: _copy_verified(_remote_chunks(uri), uri, expected, destination), attempts
    )


def _copy_verified(
    chunks: Iterator[bytes], uri: str, expected: str | None, destination: str
) -> str:
    dest_dir, filename = os.path.split(destination)
    descriptor, partial = tempfile.mkstemp(prefix=f".{filename}.", dir=dest_dir)
    try:
        with os.fdopen(descriptor, "wb") as target:
            actual = _stream_into(target, chunks)
        _check(uri, expected, actual)
        os.replace(partial, destination)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    return destination


def verified_local_or_fetched(
    uri: str,
    sha256: str | None,
    scratch_dir: str,
    *,
    pvc_root: str = DEFAULT_PVC_ROOT,
    filename: str = "model.onnx",
    attempts: int = DEFAULT_ATTEMPTS,
) -> str:
    """A verified local path of the artifact: in place if local, else downloaded to scratch."""
    expected = normalise_digest(sha256) if sha256 is not None else None
    source = local_path(uri, pvc_root)
    if source is None:
        return fetch(uri, expected, scratch_dir, filename, pvc_root=pvc_root, attempts=attempts)
    if not os.path.isfile(source):
        raise FetchError(f"{uri}: no such file {source}")
    if expected is not None:
        _check(uri, expected, file_sha256(source))
    return source
