"""Generation engines: one interface, one real implementation on transformers."""
