"""A sandbox IWD: the email API profile served over HTTP with SQLite storage, for tests and demos.

It can be told to misbehave (latency, 5xx, 429 with Retry-After, down) and counts requests.
"""

from connector.sandbox.app import DEFAULT_API_KEY, DEFAULT_CCID, create_app
from connector.sandbox.control import SandboxControl, control_of
from connector.sandbox.faults import Faults, RequestLog
from connector.sandbox.runner import SandboxIWD, serve

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_CCID",
    "Faults",
    "RequestLog",
    "SandboxControl",
    "SandboxIWD",
    "control_of",
    "create_app",
    "serve",
]
