"""Training: datasets and splits (data), model construction (model), the training loop (loop)."""
