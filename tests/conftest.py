"""Shared fixtures: data factories, config writers, paths to the shared benchmark data.

Every test writes its files into ``tmp_path``; nothing is written into the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
#: CI clones the repo with ``shared/`` beside it
ADBENCH = Path(__file__).resolve().parents[2] / "shared/data/adbench"


def blob_frame(n: int = 300, d: int = 3, n_outliers: int = 10, seed: int = 0, *, with_id: bool = False,
               with_label: bool = False) -> pd.DataFrame:
    """A Gaussian blob with far-away planted outliers in the last ``n_outliers`` rows (columns f0..f{d-1})."""
    rng = np.random.default_rng(seed)
    inliers = rng.normal(0, 1, size=(n - n_outliers, d))
    outliers = rng.uniform(6, 9, size=(n_outliers, d)) * rng.choice([-1, 1], size=(n_outliers, d))
    frame = pd.DataFrame(np.vstack([inliers, outliers]), columns=[f"f{i}" for i in range(d)])
    if with_id:
        frame.insert(0, "id", np.arange(1, n + 1))
    if with_label:
        frame["label"] = np.r_[np.zeros(n - n_outliers, dtype=int), np.ones(n_outliers, dtype=int)]
    return frame


@pytest.fixture(autouse=True)
def adpipe_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ADPIPE_HOME (model key) and model store; the user's ~/.adpipe is never touched."""
    home = tmp_path_factory.mktemp("adpipe_home")
    monkeypatch.setenv("ADPIPE_HOME", str(home))
    monkeypatch.setenv("ADPIPE_STORE", str(home / "models"))
    for var in ("ADPIPE_MODEL_KEY", "ADPIPE_MODEL_TRUST", "ADPIPE_ENV", "ADPIPE_OVERRIDES"):  # no env file / overrides
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def adbench_dir() -> Path:
    """The folder of the ADBench ``.npz`` files shared beside the repository."""
    if not ADBENCH.is_dir():
        pytest.skip(f"shared benchmark data not found at {ADBENCH}")
    return ADBENCH


@pytest.fixture
def make_csv(tmp_path: Path) -> Callable[..., Path]:
    """``make_csv(frame_or_text, name="data.csv")`` writes a CSV into tmp_path and returns its path.

    Without arguments it writes ``blob_frame(with_id=True)``.
    """

    def make(data: pd.DataFrame | str | None = None, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            data = blob_frame(with_id=True)
        if isinstance(data, str):
            path.write_text(data)
        else:
            data.to_csv(path, index=False)
        return path

    return make


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """``make_config(dict_or_yaml_text, name="pipe.yaml")`` writes a config into tmp_path."""

    def make(data: Any, name: str = "pipe.yaml") -> Path:
        return write_yaml(tmp_path / name, data)

    return make


def basic_config(data: str = "data.csv", out: str = "out/scores.csv", **extra: Any) -> dict:
    """A small runnable pipeline config (relative paths resolve against the config's folder)."""
    cfg: dict[str, Any] = {
        "source": {"type": "csv", "path": data},
        "detector": {"type": "iforest", "n_estimators": 50, "random_state": 0},
        "threshold": {"type": "contamination", "contamination": 0.1},
        "sinks": [{"type": "csv", "path": out}],
    }
    cfg.update(extra)
    return cfg


GROUPED_CONFIG = """\
defaults:
  - detector: iforest
  - _self_
source: {type: csv, path: data.csv}
threshold: {type: contamination, contamination: 0.1}
sinks:
  - {type: csv, path: out/scores.csv}
"""


@pytest.fixture
def project(tmp_path: Path, make_csv) -> Path:
    """tmp_path holding data.csv (300 rows: id, f0..f2) and pipe.yaml scoring it into out/scores.csv.

    pipe.yaml picks its detector from the packaged config group (``defaults: [detector: iforest]``),
    so ``detector=lof`` switches it, as in the README.
    """
    make_csv()
    write_yaml(tmp_path / "pipe.yaml", GROUPED_CONFIG)
    return tmp_path


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``python -m adpipe ARGS`` in a subprocess."""
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "adpipe", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (relative names), hidden temp files included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- local plugins
import types  # noqa: E402

import adpipe  # noqa: E402


class MeanDistance(adpipe.Detector):
    """Euclidean distance to the training mean (a tiny deterministic detector for tests)."""

    name = "mean_distance"

    class Params(adpipe.Params):
        scale: float = adpipe.Field(1.0, gt=0, description="multiplies every score")

    def fit(self, X):
        self.mean_ = np.asarray(X, dtype=float).mean(axis=0)
        return self

    def score(self, X):
        return np.linalg.norm(np.asarray(X, dtype=float) - self.mean_, axis=1) * self.params.scale


class FailingScore(MeanDistance):
    """Fits, then fails to score anything but its training rows (for rollback tests)."""

    name = "failing_score"

    def fit(self, X):
        super().fit(X)
        self.training_scores_ = super().score(X)
        return self

    def score(self, X):
        raise RuntimeError("boom: scoring failed on purpose")


def plugin_module(*classes: type, name: str = "local_test_plugins", **hooks: Callable) -> types.ModuleType:
    """A plugin module object registering ``classes`` and carrying the lifecycle ``hooks`` given."""
    mod = types.ModuleType(name)

    @adpipe.hookimpl
    def adpipe_register(registry):
        for cls in classes:
            registry.add(cls)

    mod.adpipe_register = adpipe_register
    for hook_name, fn in hooks.items():
        setattr(mod, hook_name, adpipe.hookimpl(fn))
    return mod


def local_registry(*classes: type, **hooks: Callable):
    """A freshly discovered registry (built-ins) plus ``classes`` and ``hooks`` registered locally."""
    from adpipe.core.registry import load_registry

    reg = load_registry()
    reg.register_module(plugin_module(*classes, **hooks))
    return reg


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One local Spark (local[2], UI off) for the whole session; skipped when PySpark is not installed.

    Executors' Python workers inherit the environment the JVM started with: their ADPIPE_HOME (model
    key) is ``spark.adpipe_home``, not the per-test one.
    """
    pytest.importorskip("pyspark")
    from adpipe.integrations.spark.session import get_spark

    home = tmp_path_factory.mktemp("spark_adpipe_home")
    before = os.environ.get("ADPIPE_HOME")
    os.environ["ADPIPE_HOME"] = str(home)
    try:
        conf = {"spark.sql.shuffle.partitions": "4", "spark.sql.warehouse.dir": str(home / "warehouse")}
        session = get_spark("local[2]", conf, app_name="adpipe-tests")
    finally:
        if before is None:
            os.environ.pop("ADPIPE_HOME", None)
        else:
            os.environ["ADPIPE_HOME"] = before
    session.adpipe_home = home
    yield session
    session.stop()
