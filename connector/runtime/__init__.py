"""The runtime: which mailbox runs where and when.

The daemon and its per-mailbox runners, the scheduler jobs and push loops, hot reload, the
watchdog, the status reporter, the long-running services beside them and, with several replicas,
membership and mailbox leases. It decides *which* mailbox syncs; `connector.sync` moves the mail.
"""
