"""Security of the HTTP service over real HTTP on 127.0.0.1: API keys, roles, rate limits, body-size limits,
security headers, the audit log, TLS and the `adpipe keys` command."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import stat
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from adpipe.core.errors import ConfigError
from adpipe.service.keys import (
    DuplicateKeyError,
    KeysFileError,
    UnknownKeyError,
    UnknownRoleError,
    create_key,
    hash_key,
    read_keys,
    revoke_key,
)
from adpipe.service.security import Principal, install, require
from adpipe.service.settings import ServeSettings
from tests.conftest import run_cli
from tests.service_harness import serve

Reader = Annotated[Principal, Depends(require("read"))]
Scorer = Annotated[Principal, Depends(require("score"))]
Admin = Annotated[Principal, Depends(require("admin"))]
ROLE_OF = {"reader": "read", "scorer": "score", "admin": "admin"}


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A keys file with one key per role: (path, {name: key})."""
    path = tmp_path / "keys.yaml"
    return path, {name: create_key(path, name, role)[0] for name, role in ROLE_OF.items()}


def small_app(settings: ServeSettings) -> FastAPI:
    """A tiny API guarded the way the real one is."""
    app = FastAPI()

    @app.get("/v1/things")
    async def things(who: Reader) -> dict:
        return {"who": who.name, "roles": sorted(who.roles)}

    @app.post("/v1/models/{name}/score")
    async def score(name: str, request: Request, who: Scorer) -> dict:
        return {"model": name, "bytes": len(await request.body())}

    @app.post("/v1/models/{name}/promote")
    async def promote(name: str, who: Admin) -> dict:
        return {"promoted": name}

    @app.get("/v1/double", dependencies=[Depends(require("read"))])
    async def double(who: Admin) -> dict:  # two guards on one route
        return {"who": who.name}

    @app.get("/open")
    async def open_page() -> dict:
        return {"ok": True}

    install(app, settings)
    return app


def settings_for(keys_file: Path | None = None, **kw) -> ServeSettings:
    if keys_file is None:
        kw.setdefault("no_auth", True)
    return ServeSettings(keys_file=keys_file, **kw)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error_body(response: httpx.Response, error: str) -> None:
    body = response.json()
    assert set(body) == {"error", "message", "hint"}
    assert body["error"] == error and body["message"] and body["hint"]


# ------------------------------------------------------------------------------------------------ keys, roles

def test_no_key_or_an_unknown_key_gets_401_with_www_authenticate(keys):
    path, _ = keys
    with serve(small_app(settings_for(path))) as url, httpx.Client(base_url=url) as http:
        missing = http.get("/v1/things")
        wrong = http.get("/v1/things", headers=bearer("adp_" + "x" * 43))
        wrong_header = http.get("/v1/things", headers={"X-API-Key": "not-a-key"})
        basic = http.get("/v1/things", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    for r in (missing, wrong, wrong_header, basic):
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_error_body(r, "unauthorized")
    assert "invalid_token" in wrong.headers["www-authenticate"]
    assert "no API key" in missing.json()["message"]


def test_roles_are_hierarchical_and_both_headers_carry_the_key(keys):
    path, secret = keys
    expected = {  # (key name, method, path) -> status
        ("reader", "GET", "/v1/things"): 200, ("reader", "POST", "/v1/models/m/score"): 403,
        ("reader", "POST", "/v1/models/m/promote"): 403,
        ("scorer", "GET", "/v1/things"): 200, ("scorer", "POST", "/v1/models/m/score"): 200,
        ("scorer", "POST", "/v1/models/m/promote"): 403,
        ("admin", "GET", "/v1/things"): 200, ("admin", "POST", "/v1/models/m/score"): 200,
        ("admin", "POST", "/v1/models/m/promote"): 200,
    }
    got, got_x = {}, {}
    with serve(small_app(settings_for(path))) as url, httpx.Client(base_url=url) as http:
        for name, method, route in expected:
            got[(name, method, route)] = http.request(method, route, headers=bearer(secret[name])).status_code
            got_x[(name, method, route)] = http.request(method, route, headers={"X-API-Key": secret[name]}).status_code
        me = http.get("/v1/things", headers=bearer(secret["scorer"])).json()
        denied = http.post("/v1/models/m/promote", headers=bearer(secret["reader"]))
    assert got == expected and got_x == expected
    assert me == {"who": "scorer", "roles": ["read", "score"]}
    assert_error_body(denied, "forbidden")
    assert "'admin'" in denied.json()["message"]


def test_keys_file_holds_hashes_only_with_mode_0600(keys):
    path, secret = keys
    text = path.read_text()
    for key in secret.values():
        assert key not in text and key[4:] not in text
        assert hash_key(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [e.name for e in read_keys(path)] == list(ROLE_OF)
    assert not list(path.parent.glob(".keys.yaml.*"))  # no temp file left behind


def test_revoking_or_creating_a_key_takes_effect_without_a_restart(keys):
    path, secret = keys
    with serve(small_app(settings_for(path))) as url, httpx.Client(base_url=url) as http:
        before = http.get("/v1/things", headers=bearer(secret["reader"])).status_code
        revoke_key(path, "reader")
        after = http.get("/v1/things", headers=bearer(secret["reader"]))
        new_key, _ = create_key(path, "late", "read")
        late = http.get("/v1/things", headers=bearer(new_key))
        others = http.get("/v1/things", headers=bearer(secret["scorer"])).status_code
    assert before == 200 and after.status_code == 401 and late.status_code == 200 and others == 200
    assert late.json()["who"] == "late"


def test_concurrent_key_creation_loses_no_key(tmp_path: Path):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "k.yaml"
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda i: create_key(path, f"k{i}", "read")[0], range(16)))
    stored = read_keys(path)
    assert sorted(e.name for e in stored) == sorted(f"k{i}" for i in range(16))
    assert {e.hash for e in stored} == {hash_key(k) for k in made}


def test_keys_file_errors_are_typed(tmp_path: Path):
    path = tmp_path / "k.yaml"
    create_key(path, "a", "read")
    with pytest.raises(DuplicateKeyError, match="already exists"):
        create_key(path, "a", "admin")
    with pytest.raises(UnknownRoleError, match="unknown role 'boss'"):
        create_key(path, "b", "boss")
    with pytest.raises(UnknownKeyError, match="no key named 'zz'"):
        revoke_key(path, "zz")
    with pytest.raises(KeysFileError, match="does not exist"):
        read_keys(tmp_path / "none.yaml")
    with pytest.raises(KeysFileError, match="does not exist"):
        install(FastAPI(), settings_for(tmp_path / "none.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys:\n- {name: x, hash: 'sha256:" + "0" * 64 + "', roles: [root]}\n")
    with pytest.raises(UnknownRoleError, match="root"):
        read_keys(bad)
    bad.write_text("keys:\n- {name: x, hash: 'md5:00', roles: [read]}\n")
    with pytest.raises(KeysFileError, match="'hash' must be"):
        read_keys(bad)
    dup = "- {name: x, hash: 'sha256:" + "0" * 64 + "', roles: [read]}\n"
    bad.write_text("keys:\n" + dup + dup)
    with pytest.raises(DuplicateKeyError, match="second key named 'x'"):
        read_keys(bad)
    bad.write_text("keys: [unclosed\n")
    with pytest.raises(KeysFileError, match="not valid YAML"):
        read_keys(bad)
    with pytest.raises(ValueError, match="unknown role"):
        require("owner")
    with pytest.raises(ConfigError, match="bad rate_limit"):
        install(FastAPI(), settings_for(rate_limit="lots"))


# ------------------------------------------------------------------------------------------------ rate limits

def hammer(http: httpx.Client, headers: dict[str, str], tries: int = 30) -> tuple[int, httpx.Response | None]:
    """Send requests until the first 429 (at most ``tries``): (how many passed, the 429 response)."""
    for i in range(tries):
        r = http.get("/v1/things", headers=headers)
        if r.status_code == 429:
            return i, r
        assert r.status_code == 200
    return tries, None


def test_rate_limit_per_key_answers_429_with_retry_after(keys):
    path, secret = keys
    with serve(small_app(settings_for(path, rate_limit="100/hour;5/minute"))) as url, \
            httpx.Client(base_url=url) as http:
        passed, refused = hammer(http, bearer(secret["reader"]))
        again = http.get("/v1/things", headers={"X-API-Key": secret["reader"]})
        other = http.get("/v1/things", headers=bearer(secret["scorer"]))
        other_passed, _ = hammer(http, bearer(secret["admin"]))
    assert passed == 5 and refused is not None
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert_error_body(refused, "too_many_requests")
    assert "reader" in refused.json()["message"]
    assert again.status_code == 429  # the same key by the other header
    assert other.status_code == 200 and other_passed == 5  # other keys have their own budget


def test_a_request_counts_once_however_many_guards_its_route_has(keys):
    path, secret = keys
    with serve(small_app(settings_for(path, rate_limit="3/minute"))) as url, httpx.Client(base_url=url) as http:
        statuses = [http.get("/v1/double", headers=bearer(secret["admin"])).status_code for _ in range(5)]
        reader = http.get("/v1/double", headers=bearer(secret["reader"]))
    assert statuses == [200, 200, 200, 429, 429]
    assert reader.status_code == 403


def test_no_auth_is_anonymous_with_every_role_and_limited_per_client(tmp_path: Path):
    with serve(small_app(settings_for(rate_limit="3/minute"))) as url, httpx.Client(base_url=url) as http:
        first = http.get("/v1/things")
        promote = http.post("/v1/models/m/promote")
        score = http.post("/v1/models/m/score", content=b"{}")
        limited = http.get("/v1/things")
    assert first.json() == {"who": "anonymous", "roles": ["admin", "read", "score"]}
    assert promote.status_code == 200 and score.status_code == 200
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_failed_attempts_are_limited_per_client_apart_from_keys(keys):
    path, secret = keys
    with serve(small_app(settings_for(path, rate_limit="4/minute"))) as url, httpx.Client(base_url=url) as http:
        statuses = [http.get("/v1/things", headers=bearer(f"adp_guess{i}")).status_code for i in range(6)]
        good = http.get("/v1/things", headers=bearer(secret["reader"]))
    assert statuses == [401] * 4 + [429] * 2
    assert good.status_code == 200


# ------------------------------------------------------------------------------------------ body-size limits

def test_oversize_bodies_get_413_by_content_length_and_when_chunked(keys):
    path, secret = keys
    limit = 1000

    def chunks(total: int, size: int = 300):
        sent = 0
        while sent < total:
            yield b"x" * min(size, total - sent)
            sent += size

    with serve(small_app(settings_for(path, max_body_bytes=limit))) as url, httpx.Client(base_url=url) as http:
        h = bearer(secret["scorer"])
        fits = http.post("/v1/models/m/score", content=b"x" * limit, headers=h)
        big = http.post("/v1/models/m/score", content=b"x" * (limit + 1), headers=h)
        chunked_small = http.post("/v1/models/m/score", content=chunks(limit), headers=h)
        chunked_big = http.post("/v1/models/m/score", content=chunks(50 * limit), headers=h)
        anonymous_big = http.post("/v1/models/m/score", content=b"x" * 10 * limit)  # refused before auth
        still_serving = http.get("/v1/things", headers=h)
    assert fits.status_code == 200 and fits.json()["bytes"] == limit
    assert chunked_small.status_code == 200 and chunked_small.json()["bytes"] == limit
    for r in (big, chunked_big, anonymous_big):
        assert r.status_code == 413
        assert_error_body(r, "payload_too_large")
        assert str(limit) in r.json()["message"]
        assert r.headers["x-content-type-options"] == "nosniff"
    assert still_serving.status_code == 200


# ------------------------------------------------------------------------------------------ headers, audit

def test_security_headers_and_request_id(keys):
    path, secret = keys
    with serve(small_app(settings_for(path))) as url, httpx.Client(base_url=url) as http:
        api = http.get("/v1/things", headers={**bearer(secret["reader"]), "X-Request-ID": "abc-123"})
        denied = http.get("/v1/things")
        page = http.get("/open")
        docs = http.get("/docs")
        other = http.get("/open")
        evil = http.get("/open", headers={"X-Request-ID": "x" * 500})
    for r in (api, denied, page, docs):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in r.headers  # plain HTTP
    assert api.headers["cache-control"] == "no-store" and denied.headers["cache-control"] == "no-store"
    assert "cache-control" not in page.headers
    assert api.headers["content-security-policy"].startswith("default-src 'self'")
    assert "cdn.jsdelivr.net" not in api.headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    assert api.headers["x-request-id"] == "abc-123"
    assert len(page.headers["x-request-id"]) == 32 and page.headers["x-request-id"] != other.headers["x-request-id"]
    assert len(evil.headers["x-request-id"]) == 32  # an over-long id is replaced, never echoed


def test_audit_log_has_one_json_line_per_request_without_key_material(keys, tmp_path: Path):
    path, secret = keys
    audit = tmp_path / "logs" / "audit.jsonl"
    with serve(small_app(settings_for(path, audit_log=audit, max_body_bytes=100))) as url, \
            httpx.Client(base_url=url) as http:
        http.post("/v1/models/fraud/score", content=b"{}", headers={**bearer(secret["scorer"]), "X-Request-ID": "r1"})
        http.post("/v1/models/fraud/promote", headers={"X-API-Key": secret["scorer"]})
        http.get("/v1/things", headers=bearer("adp_wrong"))
        http.get("/open")
        http.post("/v1/models/big/score", content=b"x" * 101, headers=bearer(secret["admin"]))
        http.get("/nowhere")
    lines = audit.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["who"], r["method"], r["path"], r["status"]) for r in records] == [
        ("scorer", "POST", "/v1/models/fraud/score", 200),
        ("scorer", "POST", "/v1/models/fraud/promote", 403),
        (None, "GET", "/v1/things", 401),
        (None, "GET", "/open", 200),
        (None, "POST", "/v1/models/big/score", 413),
        (None, "GET", "/nowhere", 404),
    ]
    assert records[0]["route"] == "/v1/models/{name}/score" and records[0]["model"] == "fraud"
    assert records[0]["request_id"] == "r1" and records[0]["client_ip"] == "127.0.0.1"
    assert records[3]["model"] is None and records[5]["route"] is None
    for r in records:
        when = dt.datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
        assert when.utcoffset() == dt.timedelta(0)
        assert r["duration_ms"] >= 0 and r["request_id"]
    text = audit.read_text()
    for key in [*secret.values(), "adp_wrong"]:
        assert key not in text
    assert "sha256" not in text
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600


def test_no_auth_audit_names_anonymous(tmp_path: Path):
    audit = tmp_path / "audit.jsonl"
    with serve(small_app(settings_for(audit_log=audit))) as url, httpx.Client(base_url=url) as http:
        http.get("/v1/things")
    (record,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert record["who"] == "anonymous" and record["status"] == 200 and record["route"] == "/v1/things"


# ------------------------------------------------------------------------------------------------------- TLS

def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_tls_serves_https_with_hsts_and_refuses_plain_http(keys, tmp_path: Path):
    path, secret = keys
    cert, key = self_signed(tmp_path)
    settings = settings_for(path, tls_certfile=cert, tls_keyfile=key)
    with serve(small_app(settings), ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        assert url.startswith("https://")
        with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(cert))) as http:
            ok = http.get("/v1/things", headers=bearer(secret["reader"]))
            page = http.get("/open")
        with pytest.raises(httpx.ConnectError):  # a certificate nobody vouches for
            httpx.get(url + "/open")
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/open")
    assert ok.status_code == 200 and ok.json()["who"] == "reader"
    for r in (ok, page):
        assert r.headers["strict-transport-security"].startswith("max-age=")


# -------------------------------------------------------------------------------------------- adpipe keys CLI

def test_keys_cli_create_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from click.testing import CliRunner

    from adpipe.core.cli import cli

    keys_file = str(tmp_path / "k.yaml")
    created = run_cli("keys", "create", "ci", "--role", "score", "--keys-file", keys_file, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()  # stdout carries the key alone
    assert key.startswith("adp_") and len(key) == 47 and "shown only this once" in created.stderr
    assert key not in Path(keys_file).read_text()

    runner = CliRunner()
    listed = runner.invoke(cli, ["keys", "list", "--keys-file", keys_file, "--json"])
    assert listed.exit_code == 0
    (entry,) = json.loads(listed.stdout)
    assert entry["name"] == "ci" and entry["roles"] == ["score"] and key.startswith(entry["prefix"])
    assert "hash" not in entry and key not in listed.stdout and "sha256" not in listed.stdout
    table = runner.invoke(cli, ["keys", "list", "--keys-file", keys_file], env={"COLUMNS": "200"})
    assert "ci" in table.stdout and "score" in table.stdout and key not in table.stdout
    assert "sha256" not in table.stdout

    dup = run_cli("keys", "create", "ci", "--role", "read", "--keys-file", keys_file, cwd=tmp_path)
    assert dup.returncode == 2 and "already exists" in dup.stderr and "DuplicateKeyError" in dup.stderr
    missing = run_cli("keys", "revoke", "ci", "--keys-file", "nope.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    role = runner.invoke(cli, ["keys", "create", "x", "--role", "root", "--keys-file", keys_file])
    assert role.exit_code == 2 and "'root' is not one of" in role.stderr
    unknown = runner.invoke(cli, ["keys", "revoke", "cd", "--keys-file", keys_file])
    assert isinstance(unknown.exception, UnknownKeyError) and "no key named 'cd'" in str(unknown.exception)
    bad_name = runner.invoke(cli, ["keys", "create", "no spaces", "--role", "read", "--keys-file", keys_file])
    assert "bad key name" in str(bad_name.exception)

    revoked = runner.invoke(cli, ["keys", "revoke", "ci", "--keys-file", keys_file])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout and read_keys(keys_file) == []

    monkeypatch.setenv("ADPIPE_SERVE_KEYS_FILE", str(tmp_path / "env-keys.yaml"))
    by_env = runner.invoke(cli, ["keys", "create", "ops", "--role", "admin"])
    assert by_env.exit_code == 0 and [e.name for e in read_keys(tmp_path / "env-keys.yaml")] == ["ops"]
    monkeypatch.delenv("ADPIPE_SERVE_KEYS_FILE")
    no_file = runner.invoke(cli, ["keys", "list"])
    assert no_file.exit_code == 2 and "--keys-file" in no_file.stderr


# ------------------------------------------------------------------------------------------------ the real app

def test_real_app_enforces_roles_limits_and_audits(keys, tmp_path: Path):
    from adpipe.service.app import create_app

    path, secret = keys
    audit = tmp_path / "audit.jsonl"
    app = create_app(ServeSettings(keys_file=path, store=tmp_path / "store", audit_log=audit, max_body_bytes=2000))
    promote = {"version": 1, "stage": "production"}
    with serve(app) as url, httpx.Client(base_url=url) as http:
        live = http.get("/v1/health/live")
        anonymous = http.get("/v1/models")
        listed = {n: http.get("/v1/models", headers=bearer(k)).status_code for n, k in secret.items()}
        promoted = {n: http.post("/v1/models/x/promote", json=promote, headers=bearer(k)) for n, k in secret.items()}
        scored = {n: http.post("/v1/models/x/score", json={"record": {"a": 1.0}}, headers={"X-API-Key": k})
                  for n, k in secret.items()}
        big = http.post("/v1/models/x/score/batch", json={"records": [{"a": 1.0}] * 500},
                        headers=bearer(secret["scorer"]))
        docs = http.get("/docs")
        schemes = http.get("/openapi.json").json()["components"]["securitySchemes"]
    assert live.status_code == 200 and live.headers["x-frame-options"] == "DENY"
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    assert listed == {"reader": 200, "scorer": 200, "admin": 200}
    assert {n: r.status_code for n, r in promoted.items()} == {"reader": 403, "scorer": 403, "admin": 404}
    assert promoted["admin"].json()["error"] == "model_not_found"  # past the guard: the model is unknown
    assert {n: r.status_code for n, r in scored.items()} == {"reader": 403, "scorer": 404, "admin": 404}
    assert big.status_code == 413 and big.json()["error"] == "payload_too_large"
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    admin_promote = [r for r in records if r["who"] == "admin" and r["method"] == "POST"
                     and r["route"] == "/v1/models/{name}/promote"]
    assert [(r["model"], r["status"]) for r in admin_promote] == [("x", 404)]
    assert len(records) == 1 + 1 + 3 + 3 + 3 + 1 + 2
    assert not any(key in audit.read_text() for key in secret.values())
