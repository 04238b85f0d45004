"""What runs on the GPU instance (or, locally, on the CPU): the inference server, the batched
generation engine, and building the pre-quantized, sharded model artifact."""
