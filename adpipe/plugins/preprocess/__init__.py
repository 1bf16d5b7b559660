"""Built-in preprocess plugins: scalers, imputation, encoders, column selection, PCA."""

import adpipe
from adpipe.plugins.preprocess.columns import Drop, Select
from adpipe.plugins.preprocess.encoders import OneHot, Ordinal
from adpipe.plugins.preprocess.impute import Impute
from adpipe.plugins.preprocess.pca import PCA
from adpipe.plugins.preprocess.scalers import MinMaxScaler, RobustScaler, StandardScaler

PLUGINS = (StandardScaler, MinMaxScaler, RobustScaler, Impute, OneHot, Ordinal, Select, Drop, PCA)


@adpipe.hookimpl
def adpipe_register(registry):
    for cls in PLUGINS:
        registry.add(cls)
