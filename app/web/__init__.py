"""The web process: verifies and enqueues GitHub webhooks, serves a status page.

The request path never calls GitHub; the arq worker does all the work.
"""

from app.web.app import create_app

__all__ = ["create_app"]
