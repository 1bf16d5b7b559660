"""The third-party plugin package from README.md: extracted, installed, discovered, run and self-tested.

Every fenced block in README.md preceded by a line ``<!-- file: RELPATH -->`` is one file of the package.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pydantic
import pytest

import adpipe
from adpipe.core.registry import load_registry
from adpipe.testing import check_registration
from conftest import REPO, blob_frame, run_cli, write_yaml

pytestmark = pytest.mark.slow

DIST = "adpipe-median-distance"
FILE_BLOCK = re.compile(r"^<!-- file: (?P<path>\S+) -->\s*\n```[^\n]*\n(?P<body>.*?)^```", re.M | re.S)


def readme_files() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return {m["path"]: m["body"] for m in FILE_BLOCK.finditer(text)}


@pytest.fixture(scope="session")
def package(tmp_path_factory) -> dict[str, Path]:
    """The README package extracted into a tmp folder and pip-installed into its own target folder."""
    root = tmp_path_factory.mktemp("readme_plugin")
    pkg, site = root / "pkg", root / "site"
    for rel, body in readme_files().items():
        target = pkg / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-input", "--quiet",
         "--disable-pip-version-check", "--target", str(site), str(pkg)],
        capture_output=True, text=True, timeout=300,
    )
    pip_error = None
    if proc.returncode != 0:
        pip_error = proc.stdout + proc.stderr
        if not backend_unusable(pip_error):
            pytest.fail(f"pip could not install the README package:\n{pip_error}")
        # this environment's setuptools cannot build a wheel without isolation (setuptools < 70.1 and no
        # `wheel`): install the same files by hand so that discovery is still tested
        shutil.rmtree(site, ignore_errors=True)
        install_by_hand(pkg, site)
    return {"root": root, "pkg": pkg, "site": site, "pip_error": pip_error}


def backend_unusable(pip_output: str) -> bool:
    return "invalid command 'bdist_wheel'" in pip_output or "setuptools" in pip_output and "requires" in pip_output


def install_by_hand(pkg: Path, site: Path) -> None:
    """What pip --target does for a pure-Python package: copy its packages, write a dist-info."""
    project = tomllib.loads((pkg / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    for init in pkg.glob("*/__init__.py"):
        shutil.copytree(init.parent, site / init.parent.name)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
             for group, eps in project.get("entry-points", {}).items()]
    (info / "entry_points.txt").write_text("\n".join(lines))


def env_for(package, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(package["site"]), os.environ.get("PYTHONPATH", "")]))
    return {"PYTHONPATH": path, **extra}


@pytest.fixture
def median_project(tmp_path) -> Path:
    blob_frame(n=200, with_id=True).to_csv(tmp_path / "data.csv", index=False)
    write_yaml(tmp_path / "median.yaml", {
        "columns": {"id": ["id"]},
        "source": {"type": "csv", "path": "data.csv"},
        "detector": {"type": "median_distance", "p": 1},
        "threshold": {"type": "contamination", "contamination": 0.05},
        "sinks": [{"type": "csv", "path": "out/scores.csv"}],
    })
    return tmp_path


def test_readme_carries_a_complete_package():
    files = readme_files()
    assert {"pyproject.toml", "my_pkg/__init__.py", "my_pkg/plugin.py", "tests/test_plugin.py"} <= set(files)
    assert 'name = "adpipe-median-distance"' in files["pyproject.toml"]
    assert '[project.entry-points."adpipe.plugins"]' in files["pyproject.toml"]


def test_pip_installs_the_readme_package(package):
    if package["pip_error"] is not None:
        pytest.skip("this environment cannot build the package without build isolation (it needs setuptools>=70.1, "
                    "or setuptools>=69 plus `wheel`); the other tests use a hand-made install of the same files. "
                    "pip said: " + next((ln.strip() for ln in package["pip_error"].splitlines()
                                         if "error:" in ln and "subprocess-exited" not in ln), "see pip's output"))
    assert list(package["site"].glob("adpipe_median_distance-0.1.0.dist-info"))


def test_installed_package_has_the_entry_point(package):
    infos = list((package["site"]).glob("adpipe_median_distance-*.dist-info"))
    assert len(infos) == 1
    assert "adpipe.plugins" in (infos[0] / "entry_points.txt").read_text()
    assert (package["site"] / "my_pkg" / "plugin.py").is_file()


def test_plugins_list_shows_it_with_its_distribution(package, tmp_path):
    proc = run_cli("plugins", "list", "--kind", "detector", cwd=tmp_path, env=env_for(package))
    assert proc.returncode == 0, proc.stderr
    line = next((ln for ln in proc.stdout.splitlines() if " median_distance " in ln), None)
    assert line is not None, proc.stdout
    assert DIST in line and "Distance to the training median" in line
    assert "failed to load" not in proc.stdout


def test_run_with_the_plugin(package, median_project):
    proc = run_cli("run", "config=median.yaml", "--json", cwd=median_project, env=env_for(package))
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(median_project / "out" / "scores.csv")
    assert len(out) == 200
    # the planted outliers (ids 191..200) are the top scores and are flagged
    assert set(out.nlargest(10, "anomaly_score")["id"]) == set(range(191, 201))
    assert out.loc[out["id"] > 190, "is_anomaly"].all()


def test_disabled_autoload_hides_it(package, median_project):
    env = env_for(package, ADPIPE_DISABLE_PLUGIN_AUTOLOAD="1")
    listed = run_cli("plugins", "list", "--kind", "detector", cwd=median_project, env=env)
    assert listed.returncode == 0 and " median_distance " not in listed.stdout and " iforest " in listed.stdout
    proc = run_cli("run", "config=median.yaml", cwd=median_project, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "median_distance" in proc.stderr and "Traceback" not in proc.stderr
    assert not (median_project / "out" / "scores.csv").exists()


def test_the_packages_own_tests_pass(package):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_plugin.py"],
        cwd=package["pkg"], env={**os.environ, **env_for(package)}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_check_registration_in_process(package):
    spec = importlib.util.spec_from_file_location("adpt_readme_plugin", package["pkg"] / "my_pkg" / "plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reg = check_registration(module)
    info = reg.info("detector", "median_distance")
    assert info.cls.summary() == "Distance to the training median (Minkowski p-norm)."
    det = info.cls(p=1)
    assert det.params.p == 1
    with pytest.raises(pydantic.ValidationError):
        info.cls(p=0)
    # and it runs in a pipeline when registered locally
    local = load_registry()
    local.register_module(module, dist=DIST, entry_point="my_detectors")
    pipe = adpipe.Pipeline.from_dict({"detector": {"type": "median_distance", "p": 1}}, registry=local)
    model = pipe.fit(blob_frame(n=100))
    assert model.score(blob_frame(n=100))["anomaly_score"].iloc[-10:].min() > 5
