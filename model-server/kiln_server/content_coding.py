"""Request bodies sent with ``Content-Encoding: gzip`` or ``deflate``, as Triton's clients send
them when asked to compress (``request_compression_algorithm``).

Decoding is bounded: a small compressed body must not expand past the request size limit
(a decompression bomb gets 413, as an oversized plain body does).
"""

from __future__ import annotations

import zlib
from typing import Final

from kiln_server.errors import InferenceError, bad_request

# zlib window bits per coding: gzip framing, and zlib framing (what HTTP calls "deflate").
_WINDOW_BITS: Final = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS,
                       b"deflate": zlib.MAX_WBITS}  # fmt: skip


def decoded_body(body: bytes, content_encoding: bytes | None, limit: int) -> bytes:
    """``body`` with its content coding removed; at most ``limit`` bytes once decoded."""
    if content_encoding is None:
        return body
    coding = content_encoding.strip().lower()
    if coding in (b"", b"identity"):
        return body
    name = coding.decode("latin-1")
    window_bits = _WINDOW_BITS.get(coding)
    if window_bits is None:
        raise InferenceError(
            415, f"Content-Encoding {name!r} is not supported; use gzip, deflate or identity"
        )
    decoder = zlib.decompressobj(window_bits)
    try:
        decoded = decoder.decompress(body, limit + 1)
    except zlib.error as error:
        raise bad_request(f"the {name} request body cannot be decoded: {error}") from None
    if len(decoded) > limit:
        raise InferenceError(413, f"the {name} request body decodes to more than {limit} bytes")
    if not decoder.eof:
        raise bad_request(f"the {name} request body is truncated")
    return decoded
