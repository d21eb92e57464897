"""Provider adapters: each turns one mail system into the small protocols of `providers.base`."""
