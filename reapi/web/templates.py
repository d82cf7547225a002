"""The Jinja2 environment: templates from reapi/web/templates, autoescaped, with the filters pages share."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from reapi.web.static import STATIC

TEMPLATES = Path(__file__).parent / "templates"


def when(ms: int | None) -> str:
    """Epoch milliseconds as 'YYYY-MM-DD HH:MM UTC' ('never' for None)."""
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def day(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def make_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    env.filters["when"] = when
    env.filters["day"] = day
    env.globals["static"] = STATIC.url
    return env


ENV = make_environment()
