"""End-to-end tests: a real gunicorn server, provisioned through the ``idp`` command."""
