"""Run order: files with a ``slow`` test first, then integration, then unit (a pytest plugin, loaded from
tests/conftest.py).

Under pytest-xdist (``make test``: ``-n 3 --dist loadfile``) each file goes whole to the next free process in this
order, so the long files start early and the many short ones fill in around them instead of one long file running
alone at the end. A file's tests stay together and in their own order (their module fixtures are set up once).
"""

from __future__ import annotations

import pytest


def _rank(items: list[pytest.Item]) -> int:
    if any(item.get_closest_marker("slow") for item in items):
        return 0
    if any(item.get_closest_marker("integration") for item in items):
        return 1
    return 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    rank = {path: _rank(file_items) for path, file_items in by_file.items()}
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])  # stable: files stay in collection order
