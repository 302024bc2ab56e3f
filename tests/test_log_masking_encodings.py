"""Masking catches a secret's common encodings too: base64 (also inside a larger base64 blob,
such as an HTTP Basic header), base64url, hex and URL-encoding (issue 8, item 11)."""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse

import pytest

from runs_app.engine.logstream import Masker

SECRET = "p@ss/w0rd+key=7?&"


def encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "base64": base64.b64encode(raw).decode(),
        "base64 without padding": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "hex": binascii.hexlify(raw).decode(),
        "HEX": binascii.hexlify(raw).decode().upper(),
        "url-encoded": urllib.parse.quote(value, safe=""),
        "url-encoded, keeping /": urllib.parse.quote(value),
        "form-encoded": urllib.parse.quote_plus(value),
        "url-encoded, lower-case escapes": re.sub(
            "%[0-9A-F]{2}", lambda m: m[0].lower(), urllib.parse.quote(value, safe="")
        ),
        "json string": json.dumps(value)[1:-1],
    }


@pytest.mark.parametrize(("form", "text"), encodings(SECRET).items())
def test_each_encoding_of_a_secret_is_masked(form, text):
    line = f"debug: value={text} end\n".encode()

    masked = Masker((SECRET,)).mask(line)

    assert masked == b"debug: value=*** end\n", form


def decodings(piece: str) -> list[bytes]:
    """`piece` decoded as base64 (either alphabet) at each of the four character offsets."""
    results = []
    for shift in range(4):
        text = "A" * shift + piece.rstrip("=")
        text = text[: len(text) - len(text) % 4]
        results.append(base64.b64decode(text, altchars=b"-_"))
    return results


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:", "admin:"])
def test_a_secret_inside_a_larger_base64_blob_is_masked_at_every_alignment(prefix):
    # Basic auth: base64("user:" + secret); the secret's characters depend on its offset mod 3.
    blob = base64.b64encode(f"{prefix}{SECRET}-and-more".encode()).decode()
    for encoded in (blob, blob.replace("+", "-").replace("/", "_")):
        masked = Masker((SECRET,)).mask(f"Authorization: Basic {encoded}\n".encode()).decode()

        assert "***" in masked
        # What is left cannot be decoded back to the secret, nor to most of it.
        leftover = masked.removeprefix("Authorization: Basic ").strip()
        for piece in leftover.split("***"):
            for decoded in decodings(piece):
                assert SECRET[2:-2].encode() not in decoded


def test_encodings_of_a_multiline_secret_are_masked_whole():
    secret = "line-one\nline-two"
    text = base64.b64encode(secret.encode()).decode()

    assert Masker((secret,)).mask(f"{text}\n".encode()) == b"***\n"


def test_ordinary_text_and_short_values_are_left_alone():
    masker = Masker(("abc", SECRET))

    line = b"abc 616263 YWJj plain text, nothing secret\n"
    assert masker.mask(line) == line
