"""Built-in drift detectors: KS and PSI (window vs reference), ADWIN and Page-Hinkley (River, streaming)."""

import adpipe
from adpipe.plugins.drift.ks import KS
from adpipe.plugins.drift.psi import PSI
from adpipe.plugins.drift.streaming import ADWIN, PageHinkley

DETECTORS: tuple = (KS, PSI, ADWIN, PageHinkley)


@adpipe.hookimpl
def adpipe_register(registry):
    for cls in DETECTORS:
        registry.add(cls)
