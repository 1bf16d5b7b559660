"""The local model store: versions, references, promotion, rollback, deletion, concurrent writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

import adpipe
from adpipe.core.engine import Pipeline
from adpipe.core.store import ModelStore

from conftest import blob_frame


@pytest.fixture(scope="module")
def model():
    return Pipeline.from_dict({"name": "fraud", "detector": "iforest"}).fit(blob_frame())


@pytest.fixture
def store(tmp_path: Path, model) -> ModelStore:
    st = ModelStore(tmp_path / "store")
    for _ in range(3):
        st.add(model)
    return st


def test_versions_count_up(store):
    assert [sv.version for sv in store.versions("fraud")] == [1, 2, 3]
    assert store.names() == ["fraud"]
    assert (store.root / "fraud" / "3.adpipe").is_file()
    assert [e["action"] for e in store.history("fraud")] == ["add"] * 3


def test_references(store):
    assert store.resolve("fraud").version == 3
    assert store.resolve("fraud@latest").version == 3
    assert store.resolve("fraud@2").ref == "fraud@2"
    store.promote("fraud", 1, "production")
    store.promote("fraud", 2, "staging")
    assert store.resolve("fraud@production").version == 1
    assert store.resolve("fraud@staging").version == 2
    assert store.get("fraud", 1).stages == ["production"]


def test_promote_then_rollback(store):
    store.promote("fraud", 1, "production")
    store.promote("fraud", 2, "production")
    assert store.resolve("fraud@production").version == 2
    assert store.get("fraud", 1).stages == []
    store.promote("fraud", 3, "production")
    assert store.rollback("fraud", "production") == (3, 2)
    assert store.resolve("fraud@production").version == 2
    assert store.rollback("fraud") == (2, 1)
    with pytest.raises(adpipe.ModelError, match="no earlier version held 'production'"):
        store.rollback("fraud")
    assert store.resolve("fraud@production").version == 1  # a refused rollback changes nothing
    actions = [(e["action"], e.get("version")) for e in store.history("fraud")][3:]
    assert actions == [("promote", 1), ("promote", 2), ("promote", 3), ("rollback", 2), ("rollback", 1)]


def test_promoting_the_current_version_again_does_not_stack(store):
    store.promote("fraud", 2, "production")
    store.promote("fraud", 2, "production")
    with pytest.raises(adpipe.ModelError, match="no earlier version"):
        store.rollback("fraud")


def test_rollback_skips_deleted_versions(store):
    for v in (1, 2, 3):
        store.promote("fraud", v, "production")
    store.delete("fraud", 2)
    assert store.rollback("fraud") == (3, 1)


def test_rollback_without_a_stage(store):
    with pytest.raises(adpipe.ModelError, match="nothing to roll back"):
        store.rollback("fraud", "production")


@pytest.mark.parametrize("stage", ["latest", "Prod", "1", "a b", ""])
def test_bad_stage_names(store, stage):
    with pytest.raises(adpipe.ModelError, match="cannot be a stage label"):
        store.promote("fraud", 1, stage)


def test_failed_validation_blocks_promotion_unless_forced(tmp_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 2)), columns=["a", "b"]).assign(y=rng.integers(0, 2, 300))
    weak = Pipeline.from_dict({"name": "weak", "detector": "iforest", "columns": {"label": "y"},
                               "fit": {"criteria": {"min_roc_auc": 0.9}}}).fit(frame)
    st = ModelStore(tmp_path)
    st.add(weak)
    with pytest.raises(adpipe.ModelError, match="not fit for promotion: roc_auc"):
        st.promote("weak", 1, "production")
    st.promote("weak", 1, "production", force=True)
    assert st.resolve("weak@production").version == 1
    assert st.history("weak")[-1]["forced"] is True


def test_delete(store, model):
    store.promote("fraud", 3, "production")
    with pytest.raises(adpipe.ModelError, match="fraud@3 is production"):
        store.delete("fraud", 3)
    assert store.delete("fraud", 2) == [2]
    assert [sv.version for sv in store.versions("fraud")] == [1, 3]
    assert store.add(model).version == 4  # numbers are never reused
    with pytest.raises(adpipe.ModelNotFoundError, match="no version 2"):
        store.resolve("fraud@2")
    with pytest.raises(adpipe.ModelError, match="holds a stage label"):
        store.delete("fraud")
    assert store.delete("fraud", force=True) == [1, 3, 4]
    assert store.names() == []
    with pytest.raises(adpipe.ModelNotFoundError):
        store.resolve("fraud")


def test_add_a_model_file_and_rename(store, tmp_path, model):
    path = model.save(tmp_path / "x.adpipe")
    sv = store.add(path, name="fraud-copy")
    assert sv.ref == "fraud-copy@1" and sv.path.read_bytes() == path.read_bytes()
    with pytest.raises(adpipe.ModelError, match="not a valid model name"):
        store.add(path, name="a/b")
    damaged = tmp_path / "damaged.adpipe"
    damaged.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(adpipe.ModelIntegrityError):
        store.add(damaged)
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".incoming")] == []


def test_default_store_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ADPIPE_STORE", str(tmp_path / "elsewhere"))
    assert ModelStore().root == tmp_path / "elsewhere"
    monkeypatch.delenv("ADPIPE_STORE")
    monkeypatch.setenv("ADPIPE_HOME", str(tmp_path / "home"))
    assert ModelStore().root == tmp_path / "home" / "models"


def _add_three(root: str, path: str) -> list[int]:
    st = ModelStore(root)
    return [st.add(Path(path), name="shared").version for _ in range(3)]


def test_concurrent_writers_get_distinct_versions(tmp_path, model):
    path = model.save(tmp_path / "m.adpipe")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_add_three, [(str(tmp_path / "st"), str(path))] * 2)
    versions = sorted(v for r in results for v in r)
    assert versions == [1, 2, 3, 4, 5, 6]
    assert [sv.version for sv in ModelStore(tmp_path / "st").versions("shared")] == versions
