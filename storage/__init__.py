"""Persistence: SQLAlchemy models and repositories, Alembic migrations, the file store, video I/O.

Knows nothing of Gradio or torch. Import the submodules directly (`storage.db`,
`storage.models`, `storage.repositories`, `storage.files`, `storage.video_io`,
`storage.consistency`); nothing is created at import time.
"""
