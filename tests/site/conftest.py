"""The site's tests share the console's fixtures: a gateway in front of the demo upstream on SQLite and
PostgreSQL (`console`), Chromium (`browser`) and the cookie client (`web`)."""
from tests.console.conftest import browser, console, web  # noqa: F401
