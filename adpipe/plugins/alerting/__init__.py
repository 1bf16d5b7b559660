"""Built-in alert channels."""

import adpipe
from adpipe.plugins.alerting.email import EmailChannel
from adpipe.plugins.alerting.file import FileChannel
from adpipe.plugins.alerting.log import LogChannel
from adpipe.plugins.alerting.slack import SlackChannel
from adpipe.plugins.alerting.webhook import WebhookChannel


@adpipe.hookimpl
def adpipe_register(registry):
    for cls in (LogChannel, WebhookChannel, SlackChannel, EmailChannel, FileChannel):
        registry.add(cls)
