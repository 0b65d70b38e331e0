"""gunicorn's access log, as gunicorn.conf.py sets it: never the code of an /OAuth2 redirect."""

from __future__ import annotations

import datetime
import runpy
from pathlib import Path
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def access_line(path_and_query: str) -> str:
    settings = runpy.run_path(str(CONF))
    config = Config()
    config.set("access_log_format", settings["access_log_format"])
    path, _, query = path_and_query.partition("?")
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": path_and_query,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.5",
        "HTTP_REFERER": f"https://app.example{path_and_query}",
        "HTTP_USER_AGENT": "Mozilla/5.0",
    }
    response = SimpleNamespace(status="302 Found", sent=0, headers=[])
    atoms = Logger(config).atoms(
        response, SimpleNamespace(headers=[]), environ, datetime.timedelta()
    )
    return config.access_log_format % atoms


def test_the_access_log_keeps_the_path_but_never_the_code_or_state():
    line = access_line("/OAuth2?code=SECRET-CODE-123&state=some-state&session_state=s")

    assert '"GET /OAuth2 HTTP/1.1" 302' in line
    assert "SECRET-CODE-123" not in line
    assert "some-state" not in line


def test_gunicorn_serves_the_projects_wsgi_application():
    assert runpy.run_path(str(CONF))["wsgi_app"] == "bizible_site.wsgi:application"
