"""A tiny WSGI app for the quickstart: shows what the app behind ferryman sees."""

import json
import os


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.rstrip("/").endswith("/login"):
        start_response("302 Found", [("Location", f"http://{environ['HTTP_HOST']}/webapps/"),
                                     ("Set-Cookie", "sessionid=demo; Path=/webapps; HttpOnly")])
        return [b""]
    seen = {
        "served_by": os.environ.get("APP_NAME", "app"),
        "path": path,
        "query": environ.get("QUERY_STRING", ""),
        "host": environ.get("HTTP_HOST"),
        "remote_addr": environ.get("REMOTE_ADDR"),
        "x_forwarded": {k[5:].lower().replace("_", "-"): v for k, v in environ.items()
                        if k.startswith("HTTP_X_FORWARDED")},
    }
    body = (json.dumps(seen, indent=2) + "\n").encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
