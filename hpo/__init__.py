"""hpo: Optuna hyperparameter search for transformer classifiers on one GPU, without CUDA OOM."""

__version__ = "0.1.0"
