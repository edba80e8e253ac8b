"""Serving the study's models: the scoring chain, MLflow pyfunc packaging, the registry rule, model cards."""
