"""Built-in detector plugins: scikit-learn's outlier detectors, the PyOD catalog and online detectors.

Importing this package imports neither scikit-learn, PyOD nor River: the wrappers
import their library in ``fit``, and the PyOD wrappers build ``Params`` from
PyOD's source on first access. See ``docs/detectors.md`` for the list.
"""

import adpipe
from adpipe.plugins.algorithms.auto import Auto
from adpipe.plugins.algorithms.ensemble import Ensemble
from adpipe.plugins.algorithms.online import ONLINE_DETECTORS
from adpipe.plugins.algorithms.pyod import PYOD_DETECTORS, TORCH_DETECTORS, PyODDetector
from adpipe.plugins.algorithms.sklearn import SKLEARN_DETECTORS

#: every built-in detector class by registered name
DETECTORS = {**SKLEARN_DETECTORS, **PYOD_DETECTORS, **ONLINE_DETECTORS}


@adpipe.hookimpl
def adpipe_register(registry):
    for cls in DETECTORS.values():
        registry.add(cls)
    registry.add(Ensemble)  # combined detectors (docs/ensembles.md)
    registry.add(Auto)


__all__ = ["DETECTORS", "ONLINE_DETECTORS", "PYOD_DETECTORS", "SKLEARN_DETECTORS", "TORCH_DETECTORS", "PyODDetector",
           "adpipe_register"]
