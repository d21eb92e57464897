"""Agents' replies: a durable outbox, composition, SMTP sending, Sent copies and IWD reporting."""
