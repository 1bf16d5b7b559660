"""Built-in preprocess plugins: same result as scikit-learn used directly, clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from pydantic import ValidationError
from sklearn import preprocessing as skp
from sklearn.decomposition import PCA as SkPCA
from sklearn.impute import SimpleImputer

import adpipe
import adpipe.plugins.preprocess as pre
from adpipe.core.plugin import NAME_RE
from adpipe.core.registry import Registry

NUM = ["a", "b", "c"]


def frames(seed: int = 0, n_train: int = 200, n_score: int = 50):
    """A train and a separate score frame: numeric columns plus a text column."""
    rng = np.random.default_rng(seed)

    def make(n, offset):
        df = pd.DataFrame(rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0], columns=NUM)
        df.insert(1, "merchant", pd.Series(rng.choice(["grocery", "fuel", "travel"], n), dtype="str"))
        df.index = pd.RangeIndex(offset, offset + n)  # a score batch's index need not start at 0
        return df

    return make(n_train, 0), make(n_score, 10_000)


def registry() -> Registry:
    reg = Registry()
    reg.register_module(pre)
    return reg


# --- contract ------------------------------------------------------------------


def test_every_preprocessor_is_registered_and_follows_the_contract():
    reg = registry()
    infos = reg.infos("preprocessor")
    assert {i.name for i in infos} == {
        "standard_scaler", "minmax_scaler", "robust_scaler", "impute", "onehot", "ordinal", "select", "drop", "pca",
    }
    for info in infos:
        cls = info.cls
        assert issubclass(cls, adpipe.Preprocessor) and NAME_RE.match(cls.name)
        assert cls.summary()
        assert issubclass(cls.Params, adpipe.Params) and cls.Params is not adpipe.Params
        for field_name, field in cls.Params.model_fields.items():
            assert field.description, f"{cls.name}.{field_name} needs a description"
        with pytest.raises(ValidationError):
            cls(no_such_key=1, **({"columns": ["a"]} if cls.Params.model_fields["columns"].is_required() else {}))


@pytest.mark.parametrize("name", ["standard_scaler", "impute", "onehot", "select", "pca"])
def test_transform_before_fit_is_a_model_error(name):
    cls = registry().get("preprocessor", name)
    stage = cls(columns=["a"]) if cls.Params.model_fields["columns"].is_required() else cls()
    with pytest.raises(adpipe.ModelError, match="fitted"):
        stage.transform(frames()[0])


# --- scalers -------------------------------------------------------------------

SCALERS = [
    (pre.StandardScaler, {}, skp.StandardScaler, {}),
    (pre.StandardScaler, {"with_mean": False}, skp.StandardScaler, {"with_mean": False}),
    (pre.MinMaxScaler, {"feature_range": [-1, 1]}, skp.MinMaxScaler, {"feature_range": (-1, 1)}),
    (pre.MinMaxScaler, {"clip": True}, skp.MinMaxScaler, {"clip": True}),
    (pre.RobustScaler, {}, skp.RobustScaler, {}),
    (pre.RobustScaler, {"quantile_range": [10, 90], "unit_variance": True}, skp.RobustScaler,
     {"quantile_range": (10, 90), "unit_variance": True}),
]


@pytest.mark.parametrize("cls,params,sk_cls,sk_params", SCALERS)
def test_scaler_matches_sklearn_on_a_separate_score_frame(cls, params, sk_cls, sk_params):
    train, score = frames()
    stage = cls(**params).fit(train)
    out = stage.transform(score)
    expected = sk_cls(**sk_params).fit(train[NUM].to_numpy()).transform(score[NUM].to_numpy())
    assert_allclose(out[NUM].to_numpy(), expected)
    assert list(out.columns) == list(score.columns)  # same columns, same order
    assert out.index.equals(score.index)
    assert (out[NUM].dtypes == np.float64).all()
    assert out["merchant"].dtype == score["merchant"].dtype  # text passes through untouched
    assert out["merchant"].tolist() == score["merchant"].tolist()
    assert stage.columns_ == NUM


def test_scaler_columns_limits_what_is_scaled():
    train, score = frames()
    out = pre.StandardScaler(columns=["b"]).fit(train).transform(score)
    assert_allclose(out[["a", "c"]], score[["a", "c"]])
    expected = skp.StandardScaler().fit(train[["b"]].to_numpy()).transform(score[["b"]].to_numpy())
    assert_allclose(out[["b"]].to_numpy(), expected)


def test_scaler_errors_name_the_column():
    train, score = frames()
    with pytest.raises(adpipe.ConfigError, match="'nope'"):
        pre.RobustScaler(columns=["a", "nope"]).fit(train)
    with pytest.raises(adpipe.DataError, match="'merchant'.*text"):
        pre.StandardScaler(columns=["merchant"]).fit(train)
    stage = pre.MinMaxScaler().fit(train)
    with pytest.raises(adpipe.DataError, match="'c'"):
        stage.transform(score.drop(columns="c"))
    with pytest.raises(adpipe.DataError, match="no numeric column"):
        pre.StandardScaler().fit(train[["merchant"]])


def test_scaler_params_are_validated():
    for bad in ({"feature_range": [1, 0]}, {"feature_range": [0, 1, 2]}):
        with pytest.raises(ValidationError):
            pre.MinMaxScaler(**bad)
    for bad in ([75, 25], [-1, 50], [50, 101]):
        with pytest.raises(ValidationError):
            pre.RobustScaler(quantile_range=bad)
    with pytest.raises(ValidationError):
        pre.StandardScaler(columns=[])
    with pytest.raises(ValidationError):
        pre.StandardScaler(with_means=False)


def test_fitted_stage_pickles():
    train, score = frames()
    stage = pre.RobustScaler().fit(train)
    again = pickle.loads(pickle.dumps(stage))
    pd.testing.assert_frame_equal(again.transform(score), stage.transform(score))


# --- impute --------------------------------------------------------------------


def with_holes(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = df.copy()
    for c in NUM:
        df.loc[rng.random(len(df)) < 0.2, c] = np.nan
    return df


@pytest.mark.parametrize(
    "params",
    [{}, {"strategy": "mean"}, {"strategy": "median"}, {"strategy": "most_frequent"},
     {"strategy": "constant", "fill_value": -7.5}, {"strategy": "constant"}],
)
def test_impute_strategies_match_simple_imputer(params):
    train, score = frames()
    train, score = with_holes(train.round(1), 1), with_holes(score.round(1), 2)
    stage = pre.Impute(**params).fit(train)
    out = stage.transform(score)
    sk = SimpleImputer(strategy=params.get("strategy", "median"), fill_value=params.get("fill_value"))
    expected = sk.fit(train[NUM].to_numpy()).transform(score[NUM].to_numpy())
    assert_allclose(out[NUM].to_numpy(), expected)
    assert not out[NUM].isna().any().any()
    assert out["merchant"].tolist() == score["merchant"].tolist()
    assert set(stage.fill_values_) == set(NUM)
    if params.get("strategy") == "constant":
        assert set(stage.fill_values_.values()) == {params.get("fill_value", 0.0)}


def test_impute_declares_it_handles_missing_and_treats_inf_as_missing():
    assert pre.Impute.handles_missing is True
    assert pre.StandardScaler.handles_missing is False
    train = pd.DataFrame({"a": [1.0, 2.0, np.inf, 10.0], "b": [1.0, 1.0, 1.0, 3.0]})
    stage = pre.Impute(strategy="mean").fit(train)
    assert stage.fill_values_["a"] == pytest.approx(13 / 3)
    out = stage.transform(pd.DataFrame({"a": [np.nan, -np.inf, 5.0], "b": [np.nan, 2.0, 2.0]}))
    assert_allclose(out.to_numpy(), [[13 / 3, 1.5], [13 / 3, 2.0], [5.0, 2.0]])


def test_impute_column_never_observed():
    train = pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, np.nan]})
    with pytest.raises(adpipe.DataError, match="'b'.*no value"):
        pre.Impute().fit(train)
    out = pre.Impute(strategy="constant", fill_value=-1).fit(train).transform(train)
    assert_allclose(out.to_numpy(), [[1.0, -1.0], [2.0, -1.0]])


def test_impute_params_are_validated():
    with pytest.raises(ValidationError):
        pre.Impute(strategy="mode")
    with pytest.raises(ValidationError):
        pre.Impute(fill_value="x")


# --- encoders ------------------------------------------------------------------


def cat_frames():
    train = pd.DataFrame({
        "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "merchant": pd.Series(["grocery", "fuel", None, "grocery", "travel", "fuel"], dtype="str"),
        "store": [3.0, 3.0, 7.0, np.nan, 7.0, 3.0],
    })
    score = pd.DataFrame({
        "amount": [9.0, 8.0, 7.0, 6.0],
        "merchant": pd.array(["casino", None, "fuel", "grocery"], dtype="str"),  # unseen + missing
        "store": [3.0, np.nan, 9.0, 7.0],
    }, index=[40, 41, 42, 43])
    return train, score


def as_object(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    out = np.array(df[cols].astype(object).to_numpy(), dtype=object)
    out[pd.isna(df[cols]).to_numpy()] = np.nan
    return out


def test_onehot_matches_sklearn_with_unseen_and_missing_categories():
    train, score = cat_frames()
    stage = pre.OneHot(columns=["merchant"]).fit(train)
    out = stage.transform(score)
    names = ["merchant=fuel", "merchant=grocery", "merchant=travel", "merchant=nan"]
    assert list(out.columns) == ["amount", *names, "store"]  # encoded block takes the column's place
    assert stage.output_columns(list(score.columns)) == list(out.columns)
    sk = skp.OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(as_object(train, ["merchant"]))
    assert_allclose(out[names].to_numpy(), sk.transform(as_object(score, ["merchant"])))
    assert_allclose(out[names].to_numpy(), [[0, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]])
    assert (out.dtypes == np.float64).all()
    assert out.index.equals(score.index)
    assert_allclose(out["store"], score["store"])


def test_onehot_numeric_categories_read_the_same_however_typed():
    train, score = cat_frames()
    stage = pre.OneHot(columns=["store"]).fit(train)
    assert stage.feature_names_ == ["store=3", "store=7", "store=nan"]
    as_int = pd.DataFrame({"store": [3, 7]})
    as_text = pd.DataFrame({"store": pd.Series(["3", "7"], dtype="str")})
    expected = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert_allclose(stage.transform(as_int).to_numpy(), expected)
    assert_allclose(stage.transform(as_text).to_numpy(), expected)


def test_onehot_object_column_and_infrequent_grouping():
    train = pd.DataFrame({"m": pd.Series(["a"] * 5 + ["b"] * 4 + ["c", "d"], dtype=object)})
    stage = pre.OneHot(columns=["m"], max_categories=3).fit(train)
    assert stage.feature_names_ == ["m=a", "m=b", "m=infrequent_sklearn"]
    out = stage.transform(pd.DataFrame({"m": ["c", "a", "zzz"]}, dtype=object))
    assert_allclose(out.to_numpy(), [[0, 0, 1], [1, 0, 0], [0, 0, 0]])
    stage = pre.OneHot(columns=["m"], min_frequency=0.3).fit(train)
    assert stage.feature_names_ == ["m=a", "m=b", "m=infrequent_sklearn"]


def test_encoders_claim_only_their_present_columns_as_text():
    stage = pre.OneHot(columns=["merchant", "country"])
    assert stage.text_columns(["amount", "merchant"]) == ["merchant"]
    assert pre.Ordinal(columns=["store"]).text_columns(["store", "merchant"]) == ["store"]
    assert pre.StandardScaler().text_columns(["merchant"]) == []


def test_ordinal_matches_sklearn_and_codes_unseen_and_missing_as_minus_one():
    train, score = cat_frames()
    stage = pre.Ordinal(columns=["merchant", "store"]).fit(train)
    out = stage.transform(score)
    assert list(out.columns) == list(score.columns)
    assert (out.dtypes == np.float64).all()
    sk = skp.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    sk.fit(as_object(train, ["merchant"]))
    assert_allclose(out[["merchant"]].to_numpy(), sk.transform(as_object(score, ["merchant"])))
    assert_allclose(out["merchant"], [-1, -1, 0, 1])  # casino unseen, None missing, fuel, grocery
    assert_allclose(out["store"], [0, -1, -1, 1])  # 3, missing, 9 unseen, 7
    assert_allclose(out["amount"], score["amount"])


def test_encoder_errors():
    train, score = cat_frames()
    with pytest.raises(ValidationError):
        pre.OneHot()  # columns are required
    with pytest.raises(ValidationError):
        pre.Ordinal(columns=["merchant"], min_frequency=1.5)
    with pytest.raises(ValidationError):
        pre.OneHot(columns=["merchant"], max_categories=1)
    with pytest.raises(adpipe.ConfigError, match="'country'"):
        pre.OneHot(columns=["merchant", "country"]).fit(train)
    stage = pre.OneHot(columns=["merchant"]).fit(train)
    with pytest.raises(adpipe.DataError, match="'merchant'"):
        stage.transform(score.drop(columns="merchant"))
    clash = train.assign(**{"merchant=fuel": 1.0})
    with pytest.raises(adpipe.DataError, match="merchant=fuel"):
        pre.OneHot(columns=["merchant"]).fit(clash)


# --- select / drop -------------------------------------------------------------


def test_select_and_drop():
    train, score = frames()
    sel = pre.Select(columns=["c", "a"]).fit(train)
    out = sel.transform(score)
    assert list(out.columns) == ["c", "a"] and sel.output_columns(list(score.columns)) == ["c", "a"]
    assert_allclose(out.to_numpy(), score[["c", "a"]].to_numpy())
    drop = pre.Drop(columns=["merchant"]).fit(train)
    out = drop.transform(score)
    assert list(out.columns) == NUM and drop.output_columns(list(score.columns)) == NUM
    assert_allclose(out.to_numpy(), score[NUM].to_numpy())


@pytest.mark.parametrize("cls", [pre.Select, pre.Drop])
def test_select_and_drop_unknown_columns(cls):
    train, score = frames()
    with pytest.raises(adpipe.ConfigError) as err:
        cls(columns=["a", "zz", "yy"]).fit(train)
    assert "'zz', 'yy'" in str(err.value) and "'merchant'" in err.value.hint  # names missing, lists available
    stage = cls(columns=["a"]).fit(train)
    with pytest.raises(adpipe.DataError, match="'a'"):
        stage.transform(score.drop(columns="a"))
    with pytest.raises(ValidationError):
        cls(columns=[])
    with pytest.raises(ValidationError):
        cls()


def test_drop_everything_is_refused():
    train, _ = frames()
    with pytest.raises(adpipe.ConfigError, match="every column"):
        pre.Drop(columns=list(train.columns)).fit(train)


# --- pca -----------------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"n_components": 2}, {"n_components": 0.5, "whiten": True}])
def test_pca_matches_sklearn(params):
    train, score = frames()
    stage = pre.PCA(**params).fit(train)
    out = stage.transform(score)
    sk = SkPCA(random_state=0, **params).fit(train[NUM].to_numpy())
    names = [f"pc{i}" for i in range(sk.n_components_)]
    assert list(out.columns) == [*names, "merchant"]
    assert stage.output_columns(list(score.columns)) == list(out.columns)
    assert_allclose(out[names].to_numpy(), sk.transform(score[NUM].to_numpy()))
    assert out.index.equals(score.index)


def test_pca_params_and_errors():
    for bad in (0, 1.0, 1.5, -2, True, "2"):
        with pytest.raises(ValidationError):
            pre.PCA(n_components=bad)
    train, _ = frames()
    with pytest.raises(adpipe.DataError, match="pca"):
        pre.PCA(n_components=5).fit(train)  # only three numeric columns
    holes = with_holes(train, 3)
    with pytest.raises(adpipe.DataError, match="impute"):
        pre.PCA().fit(holes)


# --- a chain, as the engine would run it --------------------------------------


def test_chain_impute_onehot_scale_fitted_once_applied_identically():
    train, score = cat_frames()
    stages = [pre.Impute(), pre.OneHot(columns=["merchant"]), pre.Ordinal(columns=["store"]), pre.StandardScaler()]
    frame = train
    for s in stages:
        frame = s.fit(frame).transform(frame)
    out = score
    for s in stages:
        out = s.transform(out)
    assert list(out.columns) == list(frame.columns)
    assert (out.dtypes == np.float64).all() and not out.isna().any().any()
