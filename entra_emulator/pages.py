"""HTML for the browser-facing pages, shaped like Microsoft's sign-in card.

Every value that comes from a request or the seed goes through `e()` (html.escape).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape as e

from .seed import App, Directory, User

_CSS = """
*{box-sizing:border-box}
body{margin:0;min-height:100vh;background:#f2f2f2;color:#1b1b1b;
  font:15px/1.45 "Segoe UI","Helvetica Neue",Arial,sans-serif;display:flex;
  align-items:flex-start;justify-content:center}
main{background:#fff;width:100%;max-width:440px;margin:8vh 16px 32px;padding:44px;
  box-shadow:0 2px 6px rgba(0,0,0,.2)}
main.wide{max-width:760px}
.logo{display:grid;grid-template-columns:10px 10px;gap:2px;width:22px;margin-bottom:4px}
.logo span{width:10px;height:10px}
.logo span:nth-child(1){background:#f25022}.logo span:nth-child(2){background:#7fba00}
.logo span:nth-child(3){background:#00a4ef}.logo span:nth-child(4){background:#ffb900}
.brand{margin:0 0 16px;font-size:13px;color:#5e5e5e}
.tag{border:1px solid #8a8886;border-radius:2px;padding:0 4px;font-size:11px}
h1{font-size:24px;font-weight:600;margin:0 0 8px}
h2{font-size:17px;font-weight:600;margin:24px 0 8px}
.sub{margin:0 0 16px}
label{display:block;font-weight:600;margin:12px 0 4px}
input[type=email]{width:100%;padding:6px 0;font:inherit;border:0;border-bottom:1px solid #666}
input[type=email]:focus{outline:none;border-bottom:2px solid #0067b8}
.buttons{display:flex;justify-content:flex-end;gap:8px;margin-top:24px}
button{font:inherit;min-width:108px;padding:5px 12px;border:1px solid #8a8886;
  background:#e6e6e6;color:#1b1b1b;cursor:pointer}
button.primary{background:#0067b8;border-color:#0067b8;color:#fff}
button:focus-visible{outline:2px solid #000;outline-offset:2px}
button.account{display:block;width:100%;text-align:left;background:#fff;border:0;
  border-bottom:1px solid #e6e6e6;padding:12px 8px}
button.account:hover{background:#f2f2f2}
.account .upn,.account .note{display:block;font-size:13px;color:#5e5e5e}
.error{color:#e81123;margin:8px 0}
.small{font-size:13px;color:#5e5e5e;margin-top:24px}
ul.perms{padding-left:20px}ul.perms li{margin:6px 0}
dl{font-size:13px;display:grid;grid-template-columns:max-content 1fr;gap:4px 12px}
dt{font-weight:600}dd{margin:0;word-break:break-all}
table{border-collapse:collapse;width:100%;font-size:13px;margin-bottom:8px}
th,td{text-align:left;border-bottom:1px solid #e6e6e6;padding:4px 6px;vertical-align:top}
code{word-break:break-all}
a{color:#0067b8}
"""

ERROR_TITLE = "Sorry, but we\u2019re having trouble signing you in."


def _page(title: str, content: str, *, wide: bool = False) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<main{' class=wide' if wide else ''}>\n"
        '<div class="logo" aria-hidden="true"><span></span><span></span><span></span>'
        "<span></span></div>\n"
        '<p class="brand">Microsoft Entra ID <span class="tag">emulator</span></p>\n'
        f"{content}\n</main>\n</body>\n</html>\n"
    )


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{e(name)}" value="{e(value)}">\n'
        for name, value in fields.items()
    )


def sign_in(
    *, action: str, fields: Mapping[str, str], login: str, app_name: str, error: str | None
) -> str:
    alert = f'<p class="error" id="login-error" role="alert">{e(error)}</p>\n' if error else ""
    invalid = ' aria-invalid="true" aria-describedby="login-error"' if error else ""
    return _page(
        "Sign in to your account",
        f'<h1>Sign in</h1>\n<p class="sub">to continue to {e(app_name)}</p>\n'
        f'<form method="post" action="{e(action)}">\n{_hidden(fields)}'
        '<input type="hidden" name="action" value="signin">\n'
        f"{alert}"
        '<label for="login">Email</label>\n'
        '<input id="login" name="login" type="email" autocomplete="username" required '
        f'autofocus value="{e(login)}"{invalid}>\n'
        '<div class="buttons"><button type="submit" class="primary">Sign in</button></div>\n'
        "</form>\n"
        '<p class="small">This is a local emulator of Microsoft Entra ID, not Microsoft: it asks '
        "for no password. Use the email of a user from its seed file.</p>",
    )


def account_picker(*, action: str, fields: Mapping[str, str], user: User, app_name: str) -> str:
    return _page(
        "Pick an account",
        f'<h1>Pick an account</h1>\n<p class="sub">to continue to {e(app_name)}</p>\n'
        f'<form method="post" action="{e(action)}">\n{_hidden(fields)}'
        '<button type="submit" class="account" name="action" value="pick">'
        f'<span class="name">{e(user.name)}</span><span class="upn">{e(user.upn)}</span>'
        '<span class="note">Signed in</span></button>\n'
        '<button type="submit" class="account" name="action" value="other">'
        "Use another account</button>\n</form>",
    )


def consent(
    *,
    action: str,
    fields: Mapping[str, str],
    app: App,
    publisher: str,
    user: User,
    permissions: Iterable[str],
) -> str:
    items = "".join(f"<li>{e(p)}</li>\n" for p in permissions)
    return _page(
        "Permissions requested",
        f'<p class="sub">{e(user.upn)}</p>\n<h1>Permissions requested</h1>\n'
        f"<p><strong>{e(app.name)}</strong><br>\n"
        f'<span class="small">unverified · registered in {e(publisher)}</span></p>\n'
        f'<p>This app would like to:</p>\n<ul class="perms">\n{items}</ul>\n'
        '<p class="small">Accepting these permissions means that you allow this app to use your '
        "data as specified in their terms of service and privacy statement. You can change "
        "these permissions at https://myapps.microsoft.com.</p>\n"
        f'<form method="post" action="{e(action)}">\n{_hidden(fields)}'
        '<div class="buttons">'
        '<button type="submit" name="action" value="cancel">Cancel</button>'
        '<button type="submit" name="action" value="accept" class="primary">Accept</button>'
        "</div>\n</form>",
    )


def error(*, description: str, request_id: str, correlation_id: str, timestamp: str) -> str:
    return _page(
        ERROR_TITLE,
        f"<h1>{e(ERROR_TITLE)}</h1>\n<p>{e(description)}</p>\n"
        '<h2 id="details">Troubleshooting details</h2>\n<dl aria-labelledby="details">\n'
        f"<dt>Request Id</dt><dd>{e(request_id)}</dd>\n"
        f"<dt>Correlation Id</dt><dd>{e(correlation_id)}</dd>\n"
        f"<dt>Timestamp</dt><dd>{e(timestamp)}</dd>\n"
        f"<dt>Message</dt><dd>{e(description)}</dd>\n</dl>",
    )


def error_code(code: int, error_value: str, message: str) -> str:
    return _page(
        f"AADSTS{code}",
        f"<h1>AADSTS{code}</h1>\n<p>Error: <code>{e(error_value)}</code></p>\n<p>{e(message)}</p>",
    )


def form_post(*, redirect_uri: str, fields: Mapping[str, str]) -> str:
    """`response_mode=form_post`: the one page that needs JavaScript (to submit itself)."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Working…</title>'
        "</head>\n<body>\n<main>\n"
        f'<form method="post" action="{e(redirect_uri)}">\n{_hidden(fields)}'
        "<noscript><p>Script is disabled. Press Continue to go back to the app.</p>"
        '<button type="submit">Continue</button></noscript>\n</form>\n'
        "<script>document.forms[0].submit();</script>\n</main>\n</body>\n</html>\n"
    )


def signed_out(return_url: str | None) -> str:
    link = f'<p><a href="{e(return_url)}">Return to the app</a></p>' if return_url else ""
    return _page(
        "Sign out",
        "<h1>You signed out of your account</h1>\n"
        f"<p>It\u2019s a good idea to close all browser windows.</p>\n{link}",
    )


def index(directory: Directory, *, origin: str, browser_origin: str) -> str:
    tenants = "".join(
        f"<h3>{e(t.name)} <small>({e(t.domain)}, <code>{e(t.id)}</code>)</small></h3>\n"
        "<table><thead><tr><th>Name</th><th>Email</th><th>Object id</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td>{e(u.name)}</td><td>{e(u.upn)}</td><td><code>{e(u.oid)}</code></td></tr>"
            for u in t.users
        )
        + "</tbody></table>\n"
        for t in directory.tenants.values()
    )
    apps = "".join(
        f"<tr><td>{e(a.name)}</td><td><code>{e(a.client_id)}</code></td>"
        f"<td>{e(a.sign_in_audience)}</td>"
        f"<td>{'<br>'.join(e(u) for u in a.redirect_uris)}</td>"
        f'<td><a href="/apps/{e(a.client_id)}/certificates">{len(a.certificates)} '
        "(upload)</a></td></tr>"
        for a in directory.apps.values()
    )
    orgs = "".join(
        f"<tr><td>{e(o.name)}</td><td>{e(o.url)}</td><td>{e(directory.tenants[o.tenant_id].name)}"
        "</td></tr>"
        for o in directory.orgs.values()
    )
    return _page(
        "Entra ID emulator",
        "<h1>Entra ID emulator</h1>\n"
        "<p>A local stand-in for Microsoft Entra ID (login.microsoftonline.com) and the "
        "Dynamics 365 WhoAmI call, for development and tests. Sign-in asks for an email only.</p>\n"
        f"<p>Authority for MSAL: <code>{e(origin)}/organizations</code><br>\n"
        f"Browser pages: <code>{e(browser_origin)}</code></p>\n"
        f"<h2>Tenants and users</h2>\n{tenants}"
        "<h2>App registrations</h2>\n<table><thead><tr><th>Name</th><th>Client id</th>"
        "<th>Audience</th><th>Redirect URIs</th><th>Certificates</th></tr></thead>"
        f"<tbody>{apps}</tbody></table>\n"
        "<h2>Dynamics 365 organizations</h2>\n<table><thead><tr><th>Name</th><th>URL</th>"
        f"<th>Tenant</th></tr></thead><tbody>{orgs}</tbody></table>",
        wide=True,
    )


def certificates(*, app: App, message: str | None) -> str:
    """The portal's Certificates & secrets > Certificates, for one app registration."""
    listed = "".join(
        f"<li><code>{e(c.sha1.hex().upper())}</code>, valid until "
        f"{e(c.not_after.strftime('%Y-%m-%d'))}</li>\n"
        for c in app.certificates
    )
    note = f'<p class="error" role="alert">{e(message)}</p>\n' if message else ""
    return _page(
        "Certificates",
        f'<h1>Certificates</h1>\n<p class="sub">{e(app.name)} (<code>{e(app.client_id)}</code>)'
        "</p>\n"
        f"<ul>\n{listed or '<li>No certificates uploaded yet.</li>'}</ul>\n{note}"
        '<form method="post">\n<label for="pem">Upload certificate: paste the .cer file '
        "(PEM, <code>-----BEGIN CERTIFICATE-----</code>...)</label>\n"
        '<textarea id="pem" name="pem" rows="8" required></textarea>\n'
        '<div class="buttons"><button type="submit" class="primary">Add</button></div>\n'
        '</form>\n<p class="small"><a href="/">Back to the index</a></p>',
    )
