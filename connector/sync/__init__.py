"""The sync: how one mailbox's mail becomes IWD work items, exactly once.

`pipeline` runs one cycle, `batch_delivery` delivers a fetched batch, `delivery` holds the ledger's
states and allowed moves (the no-loss, no-duplicate argument in one place), and `cycle` the report
and hooks a cycle shares with the runtime. Nothing here knows which provider or replica it runs for.
"""
