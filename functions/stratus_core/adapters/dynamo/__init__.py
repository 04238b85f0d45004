"""DynamoDB adapters: one store per table, and `transactions.py`, the one way to write several items
atomically or one item conditionally."""
