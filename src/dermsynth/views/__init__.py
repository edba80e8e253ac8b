"""Presentation of outputs: figures, Markdown tables, MLflow tracking helpers."""
