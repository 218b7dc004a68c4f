"""geno-bridge: republish cooperatives' X posts on their Mastodon accounts, exactly once."""

__version__ = "0.1.0"
