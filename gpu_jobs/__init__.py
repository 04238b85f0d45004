"""What runs on the GPU instance around vLLM (the pack handler, shipped inside the model artifact) and
what prepares for it (building and verifying the artifact, quantizing with llmcompressor)."""
