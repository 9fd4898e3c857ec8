"""Notifications outside GitHub: the `notify:` channels of an org's config.

The scan adds one `notifications` row per (event, channel) in the transaction that records
the change (outbox.py), so nothing is lost if a process dies. A cron job queues one send
job per channel whose digest interval has run out; the send job posts one message per
batch (slack.py, webhook.py) through transport.py, which refuses private addresses, and
marks the batch sent. Secrets (Slack webhook URLs, HMAC keys) come from the App's
environment (channels.py), never from the config, and never appear in a log or error.
"""
