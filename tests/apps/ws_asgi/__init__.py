"""A Django Channels (ASGI) app for the WebSocket end-to-end tests, served by uvicorn.

`launcher.AsgiMember` starts one member; `asgi.application` is what it serves; the consumers are described
in `consumers.py`, the plain HTTP views in `views.py`.
"""
