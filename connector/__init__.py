"""iwd-email-connector: contact-center mailboxes to Genesys IWD email work items."""

__version__ = "0.1.0"
