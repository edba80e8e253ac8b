"""A blinded reader study of realism: the study's plan, its SQLite store, the local web app, the analysis."""
