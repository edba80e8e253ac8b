"""A team's services (docs/team.md): PostgreSQL behind Optuna and MLflow, started on one host."""
