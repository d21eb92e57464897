"""The runtime that decides which mailbox runs where: membership, mailbox leases, the SQLite guard.

(The daemon, runner, reporter and services will move here too; see issue #13 "The house".)
"""
