"""Built-in drift detectors (filled in by the drift work)."""

import adpipe

DETECTORS: tuple = ()


@adpipe.hookimpl
def adpipe_register(registry):
    for cls in DETECTORS:
        registry.add(cls)
