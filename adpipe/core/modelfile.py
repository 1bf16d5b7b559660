"""The ``.adpipe`` model file: JSON metadata, a pickled payload, a signature and a checksum.

Layout (one file, every byte covered by the checksum)::

    ADPIPE-MODEL\\n
    {"format": 1, "metadata": <bytes>, "payload": <bytes>, "key_id": "..."}\\n   header, one JSON line
    <metadata: UTF-8 JSON>                                                     readable without unpickling
    <payload: pickle protocol 5>
    \\nsig <HMAC-SHA256 of everything above, or 64 '-'> sha256 <SHA-256 of everything before it>\\n

A changed or missing byte anywhere fails the checksum (:class:`ModelIntegrityError`). Unpickling runs
code, so by default (``ADPIPE_MODEL_TRUST=strict``) only files whose signature verifies with this
machine's model key load; unsigned or foreign files need ``trusted=True`` (CLI ``--trust``) or
``ADPIPE_MODEL_TRUST=any``. The key is ``ADPIPE_MODEL_KEY`` when set (share it between machines that
exchange models), else a random key kept in ``$ADPIPE_HOME/model.key`` (created on first save, mode 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adpipe.core.errors import ModelError, ModelIntegrityError, ModelNotFoundError, ModelTrustError

MAGIC = b"ADPIPE-MODEL\n"
FORMAT = 1
UNSIGNED = b"-" * 64
FOOTER_LEN = len(b"\nsig ") + 64 + len(b" sha256 ") + 64 + 1
SUFFIX = ".adpipe"
TRUST_POLICIES = ("strict", "any")


def adpipe_home() -> Path:
    """adpipe's own folder: ``$ADPIPE_HOME``, default ``~/.adpipe``."""
    return Path(os.environ.get("ADPIPE_HOME") or Path.home() / ".adpipe").expanduser()


def trust_policy() -> str:
    policy = os.environ.get("ADPIPE_MODEL_TRUST", "strict").strip().lower() or "strict"
    if policy not in TRUST_POLICIES:
        raise ModelError(f"ADPIPE_MODEL_TRUST={policy!r} is not a trust policy.",
                         hint=f"use one of: {', '.join(TRUST_POLICIES)}")
    return policy


def model_key(create: bool = False) -> bytes | None:
    """The signing key: ``ADPIPE_MODEL_KEY``, else ``$ADPIPE_HOME/model.key`` (made when ``create``)."""
    env = os.environ.get("ADPIPE_MODEL_KEY")
    if env:
        return env.encode()
    path = adpipe_home() / "model.key"
    if path.is_file():
        return path.read_bytes().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def key_id(key: bytes) -> str:
    """A public fingerprint of a key, to tell keys apart in messages."""
    return hashlib.sha256(b"adpipe-key-id:" + key).hexdigest()[:12]


@dataclass
class ModelFile:
    """What :func:`read` returns: the verified header, metadata and (optionally) payload bytes."""

    path: Path
    header: dict[str, Any]
    metadata: dict[str, Any]
    payload: bytes | None
    signed: bool  # signed with this machine's key
    signer: str | None  # key id the file claims, None when unsigned


def write(path: str | Path, metadata: dict[str, Any], payload: bytes, *, sign: bool = True) -> Path:
    """Write a model file atomically (temp file + rename): a crash never leaves half a model."""
    path = Path(path)
    meta = json.dumps(metadata, sort_keys=True, default=str).encode()
    key = model_key(create=True) if sign else None
    header = {"format": FORMAT, "metadata": len(meta), "payload": len(payload),
              "key_id": key_id(key) if key else None}
    body = MAGIC + json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n" + meta + payload
    sig = hmac.new(key, body, hashlib.sha256).hexdigest().encode() if key else UNSIGNED
    digest = hashlib.sha256(body + sig).hexdigest().encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body + b"\nsig " + sig + b" sha256 " + digest + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: str | Path, *, payload: bool = True, trusted: bool = False) -> ModelFile:
    """Read and verify a model file. ``payload=False`` reads metadata only (no trust check needed:
    nothing is unpickled); with ``payload=True`` the trust policy applies unless ``trusted``."""
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"No model file at {path}.", hint="check the path, or name a stored model "
                                 "like fraud@3 (`adpipe models list`)")
    if path.is_dir():
        raise ModelNotFoundError(f"{path} is a directory, not an adpipe model file.",
                                 hint=f"model files end in {SUFFIX}; `adpipe fit` writes them")
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ModelIntegrityError(f"{path} is not an adpipe model file (it does not start with the model header).",
                                  hint=f"pass a file written by `adpipe fit` or model.save() ({SUFFIX})")
    body, footer = data[:-FOOTER_LEN], data[-FOOTER_LEN:]
    damaged = f"{path} is damaged or was edited after it was written"
    if len(data) < len(MAGIC) + FOOTER_LEN or not (footer.startswith(b"\nsig ") and footer.endswith(b"\n")
                                                    and footer[69:77] == b" sha256 "):
        raise ModelIntegrityError(f"{damaged}: its checksum footer is missing (truncated file?).",
                                  hint="copy the model again from its source, or fit it again")
    sig, digest = footer[5:69], footer[77:141]
    if not hmac.compare_digest(hashlib.sha256(body + sig).hexdigest().encode(), digest):
        raise ModelIntegrityError(f"{damaged}: its SHA-256 checksum does not match.",
                                  hint="copy the model again from its source, or fit it again")
    try:
        line_end = body.index(b"\n", len(MAGIC))
        header = json.loads(body[len(MAGIC):line_end])
        start = line_end + 1
        meta_end = start + int(header["metadata"])
        if meta_end + int(header["payload"]) != len(body):
            raise ValueError("section sizes do not add up")
        metadata = json.loads(body[start:meta_end])
        fmt = int(header["format"])
    except (ValueError, KeyError, TypeError) as exc:  # only reachable with a forged checksum
        raise ModelIntegrityError(f"{damaged}: its header is malformed ({exc}).") from None
    if fmt > FORMAT:
        from adpipe.core.errors import ModelCompatibilityError

        made_by = metadata.get("adpipe_version", "a newer adpipe")
        raise ModelCompatibilityError(f"{path} uses model format {fmt}, made by adpipe {made_by}; this adpipe reads "
                                      f"format {FORMAT} and older.", hint="upgrade adpipe to load it")
    signer = header.get("key_id")
    signed = False
    if sig != UNSIGNED:
        key = model_key()
        signed = bool(key) and hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest().encode(), sig)
    blob = None
    if payload:
        if not trusted and not signed and trust_policy() == "strict":
            raise _untrusted(path, signer, sig == UNSIGNED)
        blob = body[meta_end:]
    return ModelFile(path, header, metadata, blob, signed, signer if sig != UNSIGNED else None)


def _untrusted(path: Path, signer: str | None, unsigned: bool) -> ModelTrustError:
    how = ("load it only if you trust where it came from: pass --trust (CLI) or trusted=True (Python), "
           "or set ADPIPE_MODEL_TRUST=any")
    if unsigned:
        return ModelTrustError(f"{path} is not signed; loading a model runs code from it, so the strict trust "
                               "policy refuses unsigned files.", hint=how)
    key = model_key()
    mine = f"this machine's key is {key_id(key)}" if key else "this machine has no model key"
    return ModelTrustError(f"{path} is signed with another key ({signer}); {mine}, so the strict trust policy "
                           "refuses it.", hint="set ADPIPE_MODEL_KEY to the key it was signed with, or " + how)
