"""Built-in threshold plugins: contamination, fixed cut-offs, top-k and statistical fences."""

import adpipe
from adpipe.plugins.thresholds.contamination import Contamination
from adpipe.plugins.thresholds.fixed import Probability, Score
from adpipe.plugins.thresholds.statistical import IQR, MAD, ZScore
from adpipe.plugins.thresholds.top_k import TopK

PLUGINS = (Contamination, Probability, Score, TopK, ZScore, MAD, IQR)


@adpipe.hookimpl
def adpipe_register(registry):
    for cls in PLUGINS:
        registry.add(cls)
