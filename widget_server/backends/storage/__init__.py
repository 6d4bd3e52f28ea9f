"""Storage: SQLite (WAL) by default, PostgreSQL when the URL says so; one SQLAlchemy Core code path for both."""

from widget_server.backends.storage.connect import open_storage
from widget_server.backends.storage.store import DuplicateError, Storage

__all__ = ["DuplicateError", "Storage", "open_storage"]
