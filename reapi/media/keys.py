"""The names files are stored under: tasks/{task_id}/{n}.{ext}, nothing else.

Every key is checked before it reaches a store, so no name from outside can climb out of the
media directory or the bucket prefix.
"""
from __future__ import annotations

import re

from reapi.media.sniff import BY_EXT

TASK_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
KEY = re.compile(r"tasks/([A-Za-z0-9_\-]{1,64})/(\d{1,4})\.([a-z0-9]{2,5})")
PREFIX = re.compile(r"tasks/[A-Za-z0-9_\-]{1,64}/")


def file_key(task_id: str, n: int, ext: str) -> str:
    key = f"tasks/{task_id}/{n}.{ext}"
    check_key(key)
    return key


def task_prefix(task_id: str) -> str:
    if not TASK_ID.fullmatch(task_id):
        raise ValueError("invalid task id for a media prefix")
    return f"tasks/{task_id}/"


def check_key(key: str) -> None:
    m = KEY.fullmatch(key)
    if m is None or m.group(3) not in BY_EXT:
        raise ValueError("invalid media key")


def check_prefix(prefix: str) -> None:
    if not PREFIX.fullmatch(prefix):
        raise ValueError("invalid media prefix")
