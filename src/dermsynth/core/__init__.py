"""Plumbing every stage shares: typed parameters, paths, file I/O, errors and the study's constants."""
