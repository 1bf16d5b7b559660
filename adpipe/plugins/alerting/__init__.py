"""Built-in alert channels."""

import adpipe
from adpipe.plugins.alerting.log import LogChannel


@adpipe.hookimpl
def adpipe_register(registry):
    registry.add(LogChannel)
