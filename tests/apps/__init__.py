"""Real WSGI apps served by gunicorn in integration tests."""
