"""The study's cohort: which rows and conditions are studied (selection) and how they are split (splits)."""
