"""Persistence: SQLAlchemy models and repositories, Alembic migrations, the file store.

Knows nothing of Gradio, torch or video codecs (media is `studio.media`). Import the submodules
directly (`storage.db`, `storage.models`, `storage.repositories`, `storage.files`,
`storage.consistency`); nothing is created at import time.
"""
