"""Alerting machinery shared by every notifying channel: rules, grouping, dedup, silences, outbox,
rate limits and retries. Channel plugins (adpipe/plugins/alerting/) only implement ``deliver``."""

from adpipe.core.alerting.channel import NotifyChannel, Silence
from adpipe.core.alerting.model import Alert, DeliveryError, Notification

__all__ = ["Alert", "DeliveryError", "Notification", "NotifyChannel", "Silence"]
