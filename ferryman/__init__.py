"""ferryman: a reverse proxy and load balancer for Python web apps."""

__version__ = "0.1.0"
