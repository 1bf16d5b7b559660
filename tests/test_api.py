"""The one-call Python API: adpipe.detect and adpipe.algorithms."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import adpipe
import adpipe.core.api
from adpipe.core.schema import RESULT_COLUMNS
from conftest import blob_frame

N = 200


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return blob_frame(n=N, n_outliers=10)


def check_result(result, n_rows: int = N, contamination: float = 0.05):
    assert isinstance(result, adpipe.DetectionResult)
    assert result.labels.shape == result.probabilities.shape == result.scores.shape == (n_rows,)
    assert set(np.unique(result.labels)) <= {0, 1}
    assert ((result.probabilities >= 0) & (result.probabilities <= 1)).all()
    assert np.isfinite(result.scores).all()
    s = result.summary
    assert s["rows"] == s["scored"] == n_rows and s["rejected"] == 0
    assert s["anomalies"] == int(result.labels.sum())
    assert s["anomaly_percent"] == pytest.approx(100 * s["anomalies"] / n_rows)
    assert s["anomalies"] == pytest.approx(contamination * n_rows, abs=2)
    # the planted outliers (last 10 rows) are flagged
    assert result.labels[-10:].sum() == 10
    return result


def test_detect_ndarray(frame):
    result = check_result(adpipe.detect(frame.to_numpy(), algorithm="iforest", contamination=0.05))
    assert list(result.to_frame().columns) == ["x0", "x1", "x2", *RESULT_COLUMNS]


def test_detect_dataframe_keeps_its_columns(frame):
    result = check_result(adpipe.detect(frame, contamination=0.05))
    out = result.to_frame()
    assert list(out.columns) == [*frame.columns, *RESULT_COLUMNS]
    pd.testing.assert_frame_equal(out[list(frame.columns)], frame)
    out["f0"] = 0.0  # a copy: changing it leaves the result alone
    assert (result.frame["f0"] != 0.0).any()


def test_detect_list_of_lists(frame):
    check_result(adpipe.detect(frame.to_numpy().tolist(), contamination=0.05))


def test_detect_sparse_matrix(frame):
    dense = adpipe.detect(frame.to_numpy(), contamination=0.05)
    result = check_result(adpipe.detect(sp.csr_matrix(frame.to_numpy()), contamination=0.05))
    np.testing.assert_allclose(result.scores, dense.scores)


def test_detect_csv_path(tmp_path, frame):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    result = check_result(adpipe.detect(str(path), contamination=0.05))
    assert list(result.frame.columns[:3]) == list(frame.columns)
    check_result(adpipe.detect(path, contamination=0.05))


def test_detect_missing_csv_path_is_a_source_error(tmp_path):
    with pytest.raises(adpipe.SourceError) as err:
        adpipe.detect(tmp_path / "missing.csv")
    assert "missing.csv" in str(err.value)


@pytest.mark.parametrize("algorithm", ["lof", "ecod", "knn", "isolation_forest"])
def test_detect_other_algorithms(frame, algorithm):
    result = adpipe.detect(frame, algorithm=algorithm, contamination=0.05)
    assert result.metadata["algorithm"] == algorithm
    assert result.labels[-10:].sum() >= 9


def test_result_metadata(frame):
    result = adpipe.detect(frame, algorithm="iforest", contamination=0.05, n_estimators=30)
    meta = result.metadata
    assert meta["algorithm"] == "iforest"
    assert meta["params"]["n_estimators"] == 30
    assert meta["contamination"] == 0.05
    assert meta["features"] == ["f0", "f1", "f2"]
    for lib in ("adpipe", "numpy", "pandas", "scikit-learn", "pyod"):
        assert meta["versions"][lib] not in ("", "not installed"), lib
    assert meta["versions"]["adpipe"] == adpipe.__version__
    assert "iforest" in repr(result) and "anomalies" in repr(result)


def test_result_severity_and_anomalies(frame):
    result = adpipe.detect(frame, contamination=0.05)
    assert (result.severity[result.labels == 0] == "none").all()
    assert (result.severity[result.labels == 1] != "none").all()
    assert len(result.anomalies) == result.summary["anomalies"]


def test_result_to_csv_and_to_json(tmp_path, frame):
    result = adpipe.detect(frame, contamination=0.05)
    path = result.to_csv(tmp_path / "scores.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == list(result.frame.columns) and len(back) == N
    np.testing.assert_allclose(back["anomaly_score"], result.scores)
    text = result.to_json(tmp_path / "result.json")
    doc = json.loads(text)
    assert doc == json.loads((tmp_path / "result.json").read_text())
    assert doc["summary"]["anomalies"] == result.summary["anomalies"]
    assert doc["metadata"]["algorithm"] == "iforest"
    assert len(doc["records"]) == N and doc["records"][-1]["is_anomaly"] == 1


def test_detect_with_preprocess_and_invalid_rows():
    frame = blob_frame(n=100)
    frame.loc[5, "f0"] = np.nan
    with pytest.raises(adpipe.DataError):
        adpipe.detect(frame)
    result = adpipe.detect(frame, on_invalid="drop", preprocess=[{"type": "standard_scaler"}])
    assert result.summary["rows"] == 100 and result.summary["scored"] == 99 and result.summary["rejected"] == 1
    assert len(result.rejected) == 1 and "f0" in result.rejected["reject_reason"].iloc[0]


def test_bad_algorithm_name_suggests():
    with pytest.raises(adpipe.ConfigError) as err:
        adpipe.detect(np.zeros((10, 2)), algorithm="iforrest")
    assert "did you mean 'iforest'" in str(err.value)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"n_estimators": -1}, "n_estimators"),
    ({"n_estimator": 10}, "n_estimator"),
    ({"contamination": 0.7}, "contamination"),
    ({"on_invalid": "ignore"}, "on_invalid"),
])
def test_bad_params_are_config_errors(kwargs, fragment):
    with pytest.raises(adpipe.ConfigError) as err:
        adpipe.detect(np.random.default_rng(0).normal(size=(30, 2)), **kwargs)
    assert fragment in str(err.value)


def test_bad_data_shapes():
    with pytest.raises(adpipe.DataError):
        adpipe.detect(np.zeros((2, 2, 2)))
    with pytest.raises(adpipe.DataError):
        adpipe.detect([[1, 2], [3]])
    with pytest.raises(adpipe.DataError):
        adpipe.detect(np.zeros((0, 3)))


def test_algorithms_lists_every_detector():
    table = adpipe.algorithms()
    assert list(table.columns) == ["name", "summary", "available", "needs", "from"]
    assert len(table) >= 40, f"only {len(table)} detectors are registered"
    assert table["name"].is_unique
    assert (table["summary"].str.len() > 0).all()
    assert {"iforest", "lof", "ecod", "knn", "hbos", "copod", "isolation_forest"} <= set(table["name"])
    assert table.set_index("name").loc["iforest", "available"]
    unavailable = table[~table["available"]]
    assert (unavailable["needs"].str.len() > 0).all()


def test_docstring_examples_run():
    results = doctest.testmod(adpipe.core.api, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert results.attempted >= 4 and results.failed == 0
