"""Spark integration: the scoring UDF, whole-frame scoring and per-group fitting on a local[2] session."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import adpipe
from adpipe.core.store import ModelStore

pytest.importorskip("pyspark")
from pyspark.sql import functions as F  # noqa: E402

from adpipe.integrations.spark import fit_per_group, score_frame, score_udf  # noqa: E402
from adpipe.integrations.spark.groups import POOLED  # noqa: E402

RESULTS = ["anomaly_score", "anomaly_probability", "is_anomaly", "severity", "model_version", "run_id",
           "reject_reason"]


def frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, 4)), columns=["f1", "f2", "f3", "f4"])
    df.loc[df.index[-30:], ["f1", "f2"]] += 6
    df.insert(0, "id", [f"r{i:05d}" for i in range(n)])
    df["channel"] = rng.choice(["web", "pos", "atm"], n)
    return df


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return frame()


@pytest.fixture(scope="module")
def model(data):
    config = {"columns": {"id": ["id"], "features": ["f1", "f2", "f3", "f4", "channel"]},
              "preprocess": [{"type": "onehot", "columns": ["channel"]}, {"type": "standard_scaler"}],
              "detector": {"type": "iforest", "n_estimators": 50, "random_state": 0},
              "threshold": {"type": "contamination", "contamination": 0.02},
              "validation": {"on_invalid": "drop"}}
    return adpipe.Pipeline.from_dict(config).fit(data)


def test_udf_struct_equals_model_score(spark, data, model):
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "700")  # several Arrow batches per task
    try:
        udf = score_udf(model)
        assert udf.feature_columns == ["f1", "f2", "f3", "f4", "channel"]
        got = (spark.createDataFrame(data).repartition(3)
               .withColumn("adpipe", udf(F.struct(*udf.feature_columns)))
               .select("id", "adpipe.*").toPandas().set_index("id").loc[data["id"]])
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "50000")
    expected = model.score(data).set_index("id")
    assert list(got.columns) == ["anomaly_score", "anomaly_probability", "is_anomaly"]
    np.testing.assert_allclose(got["anomaly_score"], expected["anomaly_score"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["anomaly_probability"], expected["anomaly_probability"], rtol=0, atol=1e-9)
    assert (got["is_anomaly"].to_numpy() == expected["is_anomaly"].to_numpy()).all()
    assert got["is_anomaly"].sum() >= 25


@pytest.mark.parametrize("output,column,dtype", [("score", "anomaly_score", "double"),
                                                 ("probability", "anomaly_probability", "double"),
                                                 ("label", "is_anomaly", "tinyint")])
def test_udf_single_outputs(spark, data, model, output, column, dtype):
    udf = score_udf(model, output)
    sdf = spark.createDataFrame(data.head(500)).select("id", udf(F.struct(*udf.feature_columns)).alias("x"))
    assert dict(sdf.dtypes)["x"] == dtype
    got = sdf.toPandas().set_index("id")["x"]
    expected = model.score(data.head(500)).set_index("id")[column]
    np.testing.assert_allclose(got.to_numpy(dtype=float), expected.to_numpy(dtype=float), rtol=0, atol=1e-9)


def test_udf_gives_nulls_for_unusable_rows(spark, data, model):
    bad = data.head(200).copy()
    bad.loc[3, "f1"] = np.nan
    bad.loc[5, "f2"] = np.inf
    udf = score_udf(model)
    got = (spark.createDataFrame(bad).withColumn("r", udf(F.struct(*udf.feature_columns)))
           .select("id", "r.*").toPandas().set_index("id"))
    assert got.loc[["r00003", "r00005"]].isna().all().all()
    good = got.drop(["r00003", "r00005"])
    expected = model.score(bad.drop([3, 5])).set_index("id")
    np.testing.assert_allclose(good["anomaly_score"], expected.loc[good.index, "anomaly_score"], atol=1e-9)


def test_model_is_loaded_once_per_worker(spark, data, model):
    """Many Arrow batches and tasks, one load per Python worker: the model is cached, not re-read."""
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "200")
    try:
        udf = score_udf(model, "score")
        n = spark.createDataFrame(data).repartition(6).select(udf(F.struct(*udf.feature_columns)).alias("s")) \
            .filter(F.col("s").isNotNull()).count()
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "50000")
    assert n == len(data)

    def loads(batches):
        import os

        from adpipe.integrations.spark.scoring import LOADS
        for _ in batches:
            pass
        yield pd.DataFrame({"pid": [os.getpid()], "loads": [json.dumps(dict(LOADS))]})

    seen = spark.range(8).repartition(8).mapInPandas(loads, "pid long, loads string").toPandas()
    counts = [json.loads(x) for x in seen["loads"]]
    mine = [c for c in counts if any(k.startswith("bytes:") for k in c)]
    assert mine, "no worker has the model cached"
    assert all(v == 1 for c in mine for v in c.values())  # each worker loaded each model once


def test_udf_with_a_stored_model_and_file_transport(spark, data, model):
    stored = ModelStore().add(model)
    ModelStore().promote(stored.name, stored.version, "production")
    expected = model.score(data.head(300)).set_index("id")["anomaly_score"]
    for ref, transport in ((f"{stored.name}@production", "file"), (str(stored.path), "broadcast")):
        udf = score_udf(ref, "score", transport=transport)
        got = (spark.createDataFrame(data.head(300)).select("id", udf(F.struct(*udf.feature_columns)).alias("s"))
               .toPandas().set_index("id")["s"])
        np.testing.assert_allclose(got, expected.loc[got.index], atol=1e-9)
    with pytest.raises(adpipe.ConfigError, match="needs a model file or store reference"):
        score_udf(model, transport="file")
    with pytest.raises(adpipe.ConfigError, match="output must be one of"):
        score_udf(model, "everything")


def test_unsigned_model_file_is_refused_on_the_driver(spark, model, tmp_path):
    from adpipe.core.model import save

    path = save(model, tmp_path / "unsigned.adpipe", sign=False)
    with pytest.raises(adpipe.ModelTrustError):
        score_udf(str(path))
    assert score_udf(str(path), trusted=True).model_version == model.model_version


def test_score_frame_appends_the_result_columns(spark, data, model):
    bad = data.copy()
    bad.loc[10, "f3"] = np.nan
    sdf = spark.createDataFrame(bad)
    scored = score_frame(sdf, model, run_id="run-1")
    assert scored.columns == [*sdf.columns, *RESULTS]
    types = dict(scored.dtypes)
    assert (types["anomaly_score"], types["is_anomaly"], types["severity"]) == ("double", "tinyint", "string")
    got = scored.toPandas().set_index("id").loc[bad["id"]]
    assert len(got) == len(bad)  # nothing dropped
    assert got.loc["r00010", "reject_reason"] == "missing: f3" and pd.isna(got.loc["r00010", "anomaly_score"])
    ok = got.drop("r00010")
    expected = model.score(bad.drop(10)).set_index("id").loc[ok.index]
    np.testing.assert_allclose(ok["anomaly_score"], expected["anomaly_score"], rtol=0, atol=1e-9)
    assert (ok["severity"] == expected["severity"]).all() and ok["reject_reason"].isna().all()
    assert set(ok["model_version"]) == {model.model_version} and set(ok["run_id"]) == {"run-1"}
    np.testing.assert_allclose(ok[["f1", "f2"]], bad.drop(10).set_index("id").loc[ok.index, ["f1", "f2"]])


def test_score_frame_schema_errors_come_before_any_job(spark, data, model):
    sdf = spark.createDataFrame(data.head(100))
    sc = spark.sparkContext
    sc.setJobGroup("adpipe-schema-check", "schema errors must not start jobs")
    try:
        cases = [
            (sdf.drop("f2"), "missing column 'f2' (float64 in training)"),
            (sdf.withColumn("f1", F.lit("high")), "column 'f1' was numeric (float64) in training, is now text"),
            (sdf.withColumn("channel", F.lit(1.0)), "column 'channel' was text"),
            (sdf.drop("id"), "missing column 'id'"),
        ]
        for bad, message in cases:
            with pytest.raises(adpipe.SchemaMismatchError, match=message.replace("(", r"\(").replace(")", r"\)")) \
                    as err:
                score_frame(bad, model)
            assert "org.apache" not in str(err.value) and "Traceback" not in str(err.value)
        with pytest.raises(adpipe.SchemaMismatchError, match="already has result column"):
            score_frame(sdf.withColumn("anomaly_score", F.lit(0.0)), model)
        assert list(sc.statusTracker().getJobIdsForGroup("adpipe-schema-check")) == []
    finally:
        sc.setJobGroup("", "")


def groups_frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    parts = []
    for merchant, (n, centre) in {"m1": (400, 0.0), "m2": (300, 20.0), "m3": (20, 5.0), "m4": (40, -5.0)}.items():
        d = pd.DataFrame(rng.normal(centre, 1.0, size=(n, 3)), columns=["a", "b", "c"])
        d.loc[d.index[-5:], "a"] += 8  # a few outliers in each group
        d.insert(0, "merchant", merchant)
        d.insert(0, "id", [f"{merchant}-{i}" for i in range(n)])
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


GROUP_CONFIG = {"columns": {"id": ["id"], "features": ["a", "b", "c"]},
                "detector": {"type": "iforest", "n_estimators": 50, "random_state": 0},
                "threshold": {"type": "contamination", "contamination": 0.02}}


def test_fit_per_group_fits_each_group_and_pools_small_ones(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("ADPIPE_HOME", str(spark.adpipe_home))  # executors sign the models with this key
    df = groups_frame()
    out = fit_per_group(spark.createDataFrame(df), "merchant", GROUP_CONFIG, min_group_rows=50,
                        models_dir=tmp_path / "models").toPandas()
    assert len(out) == len(df) and out["anomaly_score"].notna().all()
    by = out.groupby("adpipe_group")
    assert set(by.groups) == {'{"merchant":"m1"}', '{"merchant":"m2"}', POOLED}
    assert set(out.loc[out["adpipe_group"] == POOLED, "merchant"]) == {"m3", "m4"}  # 20 + 40 rows pooled
    assert out.groupby("adpipe_group")["model_version"].nunique().eq(1).all()
    assert out["model_version"].nunique() == 3
    for merchant in ("m1", "m2"):
        rows = df[df["merchant"] == merchant].reset_index(drop=True)
        alone = adpipe.Pipeline.from_dict(GROUP_CONFIG).fit(rows).score(rows).set_index("id")
        got = out[out["merchant"] == merchant].set_index("id").loc[alone.index]
        np.testing.assert_allclose(got["anomaly_score"], alone["anomaly_score"], rtol=0, atol=1e-9)
        assert (got["is_anomaly"].astype(int) == alone["is_anomaly"]).all()
        assert set(got.index[got["is_anomaly"] == 1]) >= {f"{merchant}-{i}" for i in range(len(rows) - 5, len(rows))}
        (path,) = set(got["adpipe_model_path"])
        saved = adpipe.load_model(path)
        np.testing.assert_allclose(saved.score(rows)["anomaly_score"], alone["anomaly_score"].to_numpy(), atol=1e-9)


def test_fit_per_group_small_groups_skip_and_failed_fits(spark):
    df = groups_frame()
    df.loc[df["merchant"] == "m2", "b"] = np.nan  # every m2 row is invalid: its fit fails, the others go on
    out = fit_per_group(spark.createDataFrame(df), ["merchant"], {**GROUP_CONFIG, "validation": {"on_invalid": "drop"}},
                        min_group_rows=30, small_groups="skip").toPandas().set_index("id")
    reasons = out.groupby("merchant")["reject_reason"].first()
    assert reasons["m3"] == "group has 20 rows, fewer than min_group_rows=30"
    assert reasons["m2"].startswith("fit failed:")
    assert pd.isna(reasons["m1"]) and pd.isna(reasons["m4"])  # m4 has 40 rows >= 30: fitted alone
    assert out.loc[out["merchant"].isin(["m2", "m3"]), "anomaly_score"].isna().all()
    assert out.loc[out["merchant"].isin(["m1", "m4"]), "anomaly_score"].notna().all()
    assert len(out) == len(df)


def test_fit_per_group_checks_its_arguments_on_the_driver(spark):
    sdf = spark.createDataFrame(groups_frame())
    with pytest.raises(adpipe.ConfigError, match="Group column.s. shop are not in the DataFrame"):
        fit_per_group(sdf, "shop", GROUP_CONFIG)
    with pytest.raises(adpipe.ConfigError, match="column.s. a are not in the DataFrame"):
        fit_per_group(sdf.drop("a"), "merchant", GROUP_CONFIG)
    with pytest.raises(adpipe.ConfigError, match="small_groups must be"):
        fit_per_group(sdf, "merchant", GROUP_CONFIG, small_groups="drop")
    with pytest.raises(adpipe.ConfigError):
        fit_per_group(sdf, "merchant", {**GROUP_CONFIG, "detector": {"type": "no_such_detector"}})


def test_spark_integration_is_a_registered_plugin():
    registry = adpipe.get_registry()
    assert registry.get("integration", "spark").summary().startswith("Spark: a scoring UDF")
    assert ("source", "spark") in registry and ("sink", "spark") in registry
    listed = subprocess.run([sys.executable, "-m", "adpipe", "plugins", "list", "--kind", "integration"],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "spark" in listed.stdout and "airflow" in listed.stdout
