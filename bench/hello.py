"""The floor under every request: a bare Flask "hello" served like the provider
(``gunicorn -c python:idp.gunicorn_conf bench.hello:app``), for ``bench/perf.py``."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "hello"
