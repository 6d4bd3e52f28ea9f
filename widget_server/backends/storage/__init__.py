"""Storage: SQLite (WAL) by default, PostgreSQL when the URL says so; one SQLAlchemy Core code path for both."""

from widget_server.backends.storage.engine import Storage, open_storage

__all__ = ["Storage", "open_storage"]
