"""brokers."""
