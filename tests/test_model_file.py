"""Model files: round trips, metadata, integrity, the trust policy and version checks."""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import adpipe
from adpipe.core import modelfile
from adpipe.core.engine import Pipeline
from adpipe.core.model import load, load_model

from conftest import blob_frame


def fit(frame: pd.DataFrame | None = None, **config):
    frame = blob_frame(with_id=True, with_label=True) if frame is None else frame
    base = {"name": "blob", "detector": {"type": "iforest"}, "columns": {"id": ["id"], "label": "label"}}
    return Pipeline.from_dict({**base, **config}).fit(frame)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return blob_frame(with_id=True, with_label=True)


@pytest.fixture
def saved(tmp_path: Path, frame: pd.DataFrame) -> tuple[object, Path]:
    model = fit(frame)
    return model, model.save(tmp_path / "blob.adpipe")


def assert_same_scores(a: pd.DataFrame, b: pd.DataFrame) -> None:
    for col in ("anomaly_score", "anomaly_probability", "is_anomaly", "severity"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy())


# --------------------------------------------------------------------------- round trips
def test_saved_model_scores_identically_after_a_move(saved, frame, tmp_path, monkeypatch):
    model, path = saved
    elsewhere = tmp_path / "fresh" / "dir"
    elsewhere.mkdir(parents=True)
    moved = Path(shutil.move(str(path), elsewhere / "renamed.adpipe"))
    monkeypatch.chdir(elsewhere)
    loaded = adpipe.load_model("renamed.adpipe")
    assert_same_scores(model.score(frame), loaded.score(frame))
    assert loaded.model_version == model.model_version
    assert moved.exists() and not path.exists()


def test_metadata_describes_the_model(saved, frame):
    model, path = saved
    meta = modelfile.read(path, payload=False).metadata
    assert meta["name"] == "blob" and meta["model_version"] == model.model_version
    assert meta["adpipe_version"] == adpipe.__version__
    assert set(meta["libraries"]) >= {"numpy", "pandas", "scikit-learn", "pyod"}
    assert meta["config"]["detector"]["type"] == "iforest"
    assert meta["config"]["detector"]["n_estimators"] == 100
    feats = meta["features"]
    assert [c["name"] for c in feats["columns"]] == list(frame.columns)  # names in order
    assert {c["name"]: c["dtype"] for c in feats["columns"]}["id"] == "int64"
    assert feats["features"] == ["f0", "f1", "f2"] and feats["id_columns"] == ["id"] and feats["label"] == "label"
    training = meta["training"]
    assert training["rows"] + training["held_out"] == len(frame)
    assert training["scores"]["count"] == training["rows"] and training["seconds"] > 0
    assert set(training["feature_stats"]) == {"f0", "f1", "f2"}
    assert meta["validation"]["split"] == "holdout" and meta["validation"]["metrics"]["roc_auc"] > 0.9
    payload = modelfile.read(path).payload
    import hashlib

    assert meta["payload"]["sha256"] == hashlib.sha256(payload).hexdigest()
    assert meta["created_at"].startswith("20")


def test_text_categories_are_recorded(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"amount": rng.normal(size=200), "shop": rng.choice(["fuel", "food", "web"], 200)})
    model = Pipeline.from_dict({"detector": "iforest", "preprocess": [{"type": "onehot", "columns": ["shop"]}]}
                               ).fit(frame)
    meta = modelfile.read(model.save(tmp_path / "m.adpipe"), payload=False).metadata
    shop = {c["name"]: c for c in meta["features"]["columns"]}["shop"]
    assert shop["kind"] == "text" and shop["categories"] == ["food", "fuel", "web"]


def test_model_file_holds_no_source_sinks_or_training_scores(tmp_path, make_csv, frame):
    csv = make_csv(frame)
    cfg = {"detector": "iforest", "source": {"type": "csv", "path": str(csv)},
           "sinks": [{"type": "sql", "url": "postgresql://u:hunter2@127.0.0.1/db", "table": "t"}]}
    model = Pipeline.from_dict(cfg).fit()
    path = model.save(tmp_path / "m.adpipe")
    assert b"hunter2" not in path.read_bytes()  # masked in the metadata, absent from the payload
    loaded = load(path)
    assert loaded.config.source is None and loaded.config.sinks == [] and loaded.fit_scores_ is None
    assert model.fit_scores_ is not None  # saving did not change the model in memory


# --------------------------------------------------------------------------- integrity
def test_flipping_any_byte_fails_with_the_integrity_error(saved):
    _, path = saved
    data = path.read_bytes()
    meta_end = data.index(b"}", data.index(b"\n", len(modelfile.MAGIC)) + 1)
    rng = np.random.default_rng(0)
    positions = sorted({*range(0, 300), *range(len(data) - modelfile.FOOTER_LEN - 20, len(data)),
                        *rng.integers(300, len(data), 300).tolist(), meta_end})
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(adpipe.ModelIntegrityError):
            load(path)
    path.write_bytes(data)
    load(path)  # the original still loads


@pytest.mark.parametrize("keep", [0, 5, 13, 100, 10_000, -1, -141, -142, -143])
def test_truncated_file_fails_with_the_integrity_error(saved, keep):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(adpipe.ModelIntegrityError):
        load(path)


def test_appended_bytes_fail_with_the_integrity_error(saved):
    _, path = saved
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(adpipe.ModelIntegrityError):
        load(path)


def test_missing_path_directory_and_foreign_file(tmp_path):
    with pytest.raises(adpipe.ModelNotFoundError, match="No model file"):
        load(tmp_path / "nope.adpipe")
    with pytest.raises(adpipe.ModelNotFoundError, match="directory"):
        load(tmp_path)
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(adpipe.ModelIntegrityError, match="not an adpipe model file"):
        load(csv)
    plain = tmp_path / "model.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(adpipe.ModelIntegrityError):
        load(plain)


def test_no_half_written_model_when_saving_fails(tmp_path, frame, monkeypatch):
    model = fit(frame)
    target = tmp_path / "m.adpipe"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(modelfile.os, "fsync", boom)
    with pytest.raises(OSError):
        model.save(target)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- trust policy
def write_forged(path: Path, payload: bytes, *, sign: bool) -> Path:
    meta = modelfile.read(path, payload=False).metadata
    return modelfile.write(path, meta, payload, sign=sign)


def test_unsigned_file_is_refused_under_the_strict_policy(saved, frame, monkeypatch):
    model, path = saved
    modelfile.write(path, modelfile.read(path, payload=False).metadata, pickle.dumps(model, protocol=5), sign=False)
    with pytest.raises(adpipe.ModelTrustError, match="not signed"):
        load(path)
    assert_same_scores(model.score(frame), load(path, trusted=True).score(frame))
    monkeypatch.setenv("ADPIPE_MODEL_TRUST", "any")
    load(path)
    monkeypatch.setenv("ADPIPE_MODEL_TRUST", "sometimes")
    with pytest.raises(adpipe.ModelError, match="ADPIPE_MODEL_TRUST"):
        load(path)


def test_file_signed_with_another_key_is_refused(tmp_path, frame, monkeypatch):
    monkeypatch.setenv("ADPIPE_MODEL_KEY", "key-of-machine-a")
    model = fit(frame)
    path = model.save(tmp_path / "m.adpipe")
    monkeypatch.setenv("ADPIPE_MODEL_KEY", "key-of-machine-b")
    with pytest.raises(adpipe.ModelTrustError, match="another key") as err:
        load(path)
    assert "key-of-machine" not in str(err.value)  # key ids only, never keys
    monkeypatch.delenv("ADPIPE_MODEL_KEY")  # the local key file differs too
    with pytest.raises(adpipe.ModelTrustError):
        load(path)
    monkeypatch.setenv("ADPIPE_MODEL_KEY", "key-of-machine-a")  # shared key: loads on "another machine"
    assert_same_scores(model.score(frame), load(path).score(frame))


def test_a_malicious_payload_never_runs_under_the_strict_policy(saved, tmp_path):
    _, path = saved
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    write_forged(path, pickle.dumps(Evil()), sign=False)  # valid checksum, no signature
    with pytest.raises(adpipe.ModelTrustError):
        load(path)
    assert not marker.exists()
    with pytest.raises(adpipe.ModelError, match="does not hold an adpipe pipeline"):  # trusted: it ran
        load(path, trusted=True)
    assert marker.exists()


def test_local_key_is_created_once_with_private_permissions(saved, adpipe_home):
    key_file = adpipe_home / "model.key"
    assert key_file.is_file() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    first = key_file.read_bytes()
    fit().save(adpipe_home / "again.adpipe")
    assert key_file.read_bytes() == first


# --------------------------------------------------------------------------- versions and plugins
def rewrite_metadata(path: Path, **changes) -> None:
    mf = modelfile.read(path)
    meta = json.loads(json.dumps(mf.metadata))
    for dotted, value in changes.items():
        target = meta
        *parents, last = dotted.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    modelfile.write(path, meta, mf.payload)


def test_model_from_a_newer_adpipe_is_refused(saved):
    _, path = saved
    rewrite_metadata(path, adpipe_version="99.0.0")
    with pytest.raises(adpipe.ModelCompatibilityError, match="adpipe 99.0.0"):
        load(path)


def test_newer_file_format_is_refused(saved):
    _, path = saved
    data = path.read_bytes()
    mf = modelfile.read(path)
    body = data[:-modelfile.FOOTER_LEN].replace(b'"format":1', b'"format":2', 1)
    import hashlib
    import hmac

    sig = hmac.new(modelfile.model_key(), body, hashlib.sha256).hexdigest().encode()
    digest = hashlib.sha256(body + sig).hexdigest().encode()
    path.write_bytes(body + b"\nsig " + sig + b" sha256 " + digest + b"\n")
    assert mf.header["format"] == 1
    with pytest.raises(adpipe.ModelCompatibilityError, match="format 2"):
        load(path)


def test_library_versions_major_refused_minor_warned(saved, frame):
    model, path = saved
    import sklearn

    major, minor, *_ = sklearn.__version__.split(".")
    rewrite_metadata(path, **{"libraries__scikit-learn": f"{int(major) + 1}.0.0"})
    with pytest.raises(adpipe.ModelCompatibilityError, match="scikit-learn"):
        load(path)
    rewrite_metadata(path, **{"libraries__scikit-learn": f"{major}.{int(minor) + 1}.0"})
    with pytest.warns(adpipe.ModelCompatibilityWarning, match="scikit-learn"):
        loaded = load(path)
    assert_same_scores(model.score(frame), loaded.score(frame))
    with pytest.raises(adpipe.ModelCompatibilityError):
        load(path, strict_versions=True)
    rewrite_metadata(path, **{"libraries__scikit-learn": sklearn.__version__})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(path)


def test_model_needing_a_missing_plugin_names_it(saved):
    _, path = saved
    rewrite_metadata(path, plugins=[{"stage": "detector", "kind": "detector", "type": "quantum_forest",
                                     "class": "qf.QF", "distribution": "adpipe-quantum", "version": "1.0"}])
    with pytest.raises(adpipe.ModelError, match="quantum_forest.*adpipe-quantum"):
        load(path)


# --------------------------------------------------------------------------- references
def test_load_model_by_reference(tmp_path, frame):
    store = adpipe.ModelStore(tmp_path / "store")
    model = fit(frame)
    store.add(model)
    store.add(model)
    loaded = load_model("blob@1", store=store)
    assert loaded.model_version == "blob@1"
    assert load_model("blob", store=store).model_version == "blob@2"
    assert_same_scores(model.score(frame), loaded.score(frame))
    assert loaded.score(frame)["model_version"].eq("blob@1").all()
    with pytest.raises(adpipe.ModelNotFoundError, match="no version 7"):
        load_model("blob@7", store=store)
    with pytest.raises(adpipe.ModelNotFoundError, match="labelled 'production'"):
        load_model("blob@production", store=store)
    with pytest.raises(adpipe.ModelNotFoundError, match="did you mean 'blob'"):
        load_model("blobb", store=store)
