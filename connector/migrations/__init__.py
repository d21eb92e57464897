"""Alembic environment and revisions for the store's schema.

Run programmatically by connector/store/migration.py (no alembic.ini needed at run time).
Developers add a revision with:
    .venv/bin/alembic -c connector/migrations/alembic.ini revision -m "what changes"
and write its upgrade() by hand, keeping connector/store/tables.py in step.
"""
