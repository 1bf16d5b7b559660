"""Principal component analysis (scikit-learn PCA)."""

from __future__ import annotations

from typing import Literal

import pandas as pd

import adpipe
from adpipe.plugins.preprocess._common import (
    CountOrShare,
    check_fitted,
    check_new_names,
    fit_sklearn,
    numeric_block,
    rebuild,
    replaced_names,
    require_data_columns,
    select_columns,
)
from adpipe.plugins.preprocess.scalers import COLUMNS_DOC


class PCA(adpipe.Preprocessor):
    """Project numeric columns onto their principal components pc0, pc1, ... (sklearn PCA).

    The components replace the projected columns; other columns pass through.
    PCA centres but does not scale: put a scaler before it when columns have
    different units.
    """

    name = "pca"

    class Params(adpipe.Params):
        n_components: CountOrShare | None = adpipe.Field(
            None,
            description="components to keep: an int >= 1, a float in (0, 1) = share of variance to explain, "
            "or null = all",
        )
        whiten: bool = adpipe.Field(False, description="scale components to unit variance")
        svd_solver: Literal["auto", "full", "covariance_eigh", "arpack", "randomized"] = adpipe.Field(
            "auto", description="scikit-learn SVD solver"
        )
        random_state: int | None = adpipe.Field(0, ge=0, description="seed of the randomized solvers (null = random)")
        columns: list[str] | None = adpipe.Field(None, min_length=1, description=COLUMNS_DOC)

    def fit(self, frame: pd.DataFrame) -> "PCA":
        p = self.params
        columns = select_columns(self.name, p.columns, frame)
        from sklearn.decomposition import PCA as SkPCA  # imported on use: plugin discovery stays fast
        model = SkPCA(
            n_components=p.n_components, whiten=p.whiten, svd_solver=p.svd_solver, random_state=p.random_state
        )
        self.pca_ = fit_sklearn(self.name, model, numeric_block(self.name, frame, columns))
        names = [f"pc{i}" for i in range(self.pca_.n_components_)]
        check_new_names(self.name, names, [c for c in frame.columns if c not in set(columns)])
        self.columns_, self.feature_names_ = columns, names
        return self

    def output_columns(self, columns: list[str]) -> list[str]:
        """After fit: ``columns`` with the projected ones replaced by ``pc0, pc1, ...``."""
        if not hasattr(self, "feature_names_"):
            return columns
        return replaced_names(columns, self.columns_, self.feature_names_)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        check_fitted(self)
        require_data_columns(self.name, self.columns_, frame)
        values = self.pca_.transform(numeric_block(self.name, frame, self.columns_))
        return rebuild(frame, self.columns_, values, self.feature_names_)
