"""gunicorn's settings, read from the working directory: `gunicorn` in the project root.

The access log writes the path, never the query string (gunicorn's `%(r)s` and `%(q)s`), nor
the Referer: the query of `/OAuth2` carries the authorization code and its state.
"""

wsgi_app = "bizible_site.wsgi:application"
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
