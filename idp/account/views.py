"""The account console ("Mon compte"); for now, who is signed in and how."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for

from ..auth import sessions

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("/")
def home():
    sso = sessions.current()
    if sso is None:
        return redirect(url_for("auth.login"))
    return render_template("account/home.html", user=sso.user, sso=sso)
