"""`ferryman demo`: the classic Django-behind-a-balancer deployment on one machine, in one command.

A front end (a real ``ferryman run``) on HTTP and HTTPS, two app servers each running the bundled
Django project (``project/``) under gunicorn on a plain and a TLS port, a shared database and
MEDIA_ROOT, certificates from a local CA, and an htpasswd user who is Django staff. Everything it
makes lives in one state directory.
"""
