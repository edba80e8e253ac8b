"""Synthetic image generators (OpenAI, local diffusers) and what they share: annotations, caches, budgets."""
