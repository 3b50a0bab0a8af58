"""The GPU: memory readings, the allocator model, OOM detection and recovery, fault injection."""
