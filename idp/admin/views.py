"""The operator console's pages: each parses the request, calls one service, renders.

Every page needs the ``admin`` role and a recent code (``access.gate``); every
change is a POST with a CSRF token; the six account actions ask for a
confirmation first (a page, no script); a rotated client secret is shown once,
in the answer to the POST itself (never in the session cookie, never again).
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _

from .. import clients as client_service
from ..account import identity, profile
from . import access, accounts, audit_log, overview
from .forms import ClientUrisForm, NationalIdForm, NewUserForm, RecordForm, RolesForm

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.before_request(access.gate)


def _refusal(reason: str) -> str:
    return {
        "self": _("You cannot disable your own account."),
        "last_admin": _("This is the last enabled administrator: it cannot be disabled."),
        "own_admin_role": _("You cannot remove your own administrator role."),
        "last_admin_role": _(
            "This is the last enabled administrator: their administrator role cannot be removed."
        ),
    }.get(reason, _("This action was refused."))


def _number(text: str) -> int | None:
    """A page number or an event id from the query string, or None: ASCII digits only
    (``str.isdigit`` also accepts "²", which ``int`` refuses) and at most 18 of them
    (a BIGINT; SQLite refuses a larger integer, and ``int`` one of 4,300 digits)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _role_choices() -> list[tuple[str, str]]:
    from ..web import role_label

    return [(role, role_label(role)) for role in accounts.configured_roles()]


@bp.get("/")
def home():
    return redirect(url_for("admin.users"))


# -- professionals ------------------------------------------------------------


@bp.route("/users", methods=["GET", "POST"])
def users():
    """Search (GET ``q``, ``page``) and the "new user" form (POST)."""
    form = NewUserForm()
    form.roles.choices = _role_choices()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit() and _invite(form):
            return redirect(url_for("admin.user", username=form.username.data.strip()))
        status = 400
    query = request.args.get("q", "")[:254]
    page_number = request.args.get("page", "1")
    page = accounts.search_users(query, _number(page_number) or 1)
    return render_template("admin/users.html", form=form, query=query, page=page), status


def _invite(form: NewUserForm) -> bool:
    try:
        accounts.validate_email_address(form.email.data)
    except accounts.UserError:
        form.email.errors = [_("Enter a valid e-mail address, for example nom@hopital.fr.")]
        return False
    try:
        invitation = accounts.invite_user(
            form.username.data,
            form.email.data,
            name=form.name.data or "",
            profession=form.profession.data or "",
            # Only the roles the form offers (the ``[roles]`` configured): a forged
            # value such as 'x", "admin' would read as ``admin`` to the SQL that counts
            # the enabled admins (``passwords.is_admin_row``) while granting nothing.
            roles=[role for role in form.roles.data or [] if role in accounts.configured_roles()],
            actor=access.admin(),
        )
    except accounts.UserError as exc:
        if "already exists" in str(exc):
            form.username.errors = [
                _("An account with this identifier or e-mail address already exists.")
            ]
        else:
            form.username.errors = [
                _("The identifier must not be empty nor hold '@', spaces or invisible characters.")
            ]
        return False
    if invitation.sent:
        flash(_("The account was created and the invitation sent by e-mail."), "info")
    else:
        flash(
            _(
                "The account was created, but the invitation could not be sent:"
                " use “Send a password link” later."
            ),
            "error",
        )
    return True


def _user_or_404(username: str):
    user = accounts.find(username)
    if user is None:
        abort(404)
    return user


def _user_page(user, *, record=None, roles=None, national=None, status=200):
    record = record or RecordForm(
        data={"email": user.email, "name": user.name, "profession": user.profession}
    )
    national = national or NationalIdForm(data={"national_id": user.national_id or ""})
    roles = roles or RolesForm(data={"roles": list(user.roles)})
    roles.roles.choices = _role_choices()
    return render_template(
        "admin/user.html",
        user=user,
        record=record,
        roles=roles,
        national=national,
        psc_linked=bool(user.psc_sub),
        devices=profile.devices(user, None),
        overview=overview.overview(user),
        is_self=user.id == access.admin().id,
    ), status


@bp.route("/users/<path:username>", methods=["GET", "POST"])
def user(username: str):
    target = _user_or_404(username)
    if request.method == "GET":
        return _user_page(target)
    action = request.form.get("action", "")
    if action == "roles":
        return _save_roles(target)
    if action == "record":
        return _save_record(target)
    if action == "national_id":
        return _save_national_id(target)
    if action not in accounts.ACTIONS:
        abort(400)
    if request.form.get("confirm") != "yes":
        return render_template("admin/confirm.html", user=target, action=action)
    return _act(target, action)


def _act(target, action: str):
    here = url_for("admin.user", username=target.username)
    try:
        outcome = accounts.ACTIONS[action](target, actor=access.admin())
    except accounts.AccountActionRefused as refused:
        flash(_refusal(refused.reason), "error")
        return redirect(here, code=303)
    messages = {
        "disable": _(
            "The account was disabled: every session, token and remembered browser ended."
        ),
        "enable": _("The account was enabled again."),
        "unlock": _("The account was unlocked: every attempt counter was cleared."),
        "reset_second_factor": _(
            "The second factor was reset: backup phone removed, no browser remembered."
            " The user was told by e-mail."
        ),
        "end_sessions": _("Every session of the account was ended."),
    }
    if action == "send_reset_link" and not outcome:
        flash(_("The e-mail could not be sent. Try again in a moment."), "error")
    elif action == "send_reset_link":
        flash(_("A link to choose a password was sent by e-mail."), "info")
    else:
        flash(messages[action], "info")
    return redirect(here, code=303)


def _save_roles(target):
    form = RolesForm()
    form.roles.choices = _role_choices()
    if not form.validate_on_submit():
        return _user_page(target, roles=form, status=400)
    try:
        accounts.set_roles(target, list(form.roles.data or []), actor=access.admin())
    except accounts.AccountActionRefused as refused:
        flash(_refusal(refused.reason), "error")
    else:
        flash(
            _("The roles were saved; a role that needs the code asks it from the next sign-in."),
            "info",
        )
    return redirect(url_for("admin.user", username=target.username), code=303)


def _save_record(target):
    form = RecordForm()
    if not form.validate_on_submit():
        return _user_page(target, record=form, status=400)
    try:
        changed = accounts.edit_record(
            target,
            email=form.email.data,
            name=form.name.data or "",
            profession=form.profession.data or "",
            actor=access.admin(),
        )
    except accounts.UserError:
        form.email.errors = [_("Enter a valid e-mail address that no other account uses.")]
        return _user_page(target, record=form, status=400)
    if changed:
        flash(_("The record was saved; the previous address was told of the change."), "info")
    else:
        flash(_("The record was saved."), "info")
    return redirect(url_for("admin.user", username=target.username), code=303)


def _save_national_id(target):
    """The number a Pro Santé Connect login is linked by (``account.identity``: checked,
    unique, audited with the admin, the user told by e-mail)."""
    form = NationalIdForm()
    if not form.validate_on_submit():
        return _user_page(target, national=form, status=400)
    try:
        stored = identity.set_national_id(
            target, (form.national_id.data or "").strip() or None, actor=access.admin()
        )
    except accounts.UserError:
        form.national_id.errors = [
            _(
                "Enter a valid RPPS number (11 digits) or ADELI number (9 digits) that no"
                " other account uses."
            )
        ]
        return _user_page(target, national=form, status=400)
    if stored:
        flash(_("The national identifier was saved; the user was told by e-mail."), "info")
    else:
        flash(_("The national identifier was removed; the user was told by e-mail."), "info")
    return redirect(url_for("admin.user", username=target.username), code=303)


# -- applications -------------------------------------------------------------


@bp.get("/clients")
def clients():
    return render_template("admin/clients.html", clients=client_service.list_clients())


def _client_or_404(client_id: str):
    row = client_service.find_client(client_id)
    if row is None:
        abort(404)
    return row


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


@bp.route("/clients/<path:client_id>", methods=["GET", "POST"])
def client(client_id: str):
    row = _client_or_404(client_id)
    meta = row.client_metadata
    form = ClientUrisForm(
        data={
            "redirect_uris": "\n".join(meta.get("redirect_uris", [])),
            "post_logout_redirect_uris": "\n".join(meta.get("post_logout_redirect_uris", [])),
            "backchannel_logout_uri": meta.get("backchannel_logout_uri", ""),
        }
    )
    error, secret, status = None, None, 200
    action = request.form.get("action", "") if request.method == "POST" else ""
    actor_id = access.admin().id
    if action in ("rotate_secret", "remove") and request.form.get("confirm") != "yes":
        return render_template("admin/confirm_client.html", client=row, action=action)
    try:
        if action == "uris" and form.validate_on_submit():
            client_service.update_uris(
                row.client_id,
                _lines(form.redirect_uris.data),
                _lines(form.post_logout_redirect_uris.data),
                (form.backchannel_logout_uri.data or "").strip() or None,
                actor_id=actor_id,
            )
            flash(_("The addresses were saved."), "info")
            return redirect(url_for("admin.client", client_id=row.client_id), code=303)
        if action == "rotate_secret":
            secret = client_service.rotate_secret(row.client_id, actor_id=actor_id)
        elif action == "remove":
            client_service.remove_client(row.client_id, actor_id=actor_id)
            flash(_("The application was removed with every token issued to it."), "info")
            return redirect(url_for("admin.clients"), code=303)
        elif action and action != "uris":
            abort(400)
    except client_service.ClientError as exc:
        error, status = str(exc), 400
    if action == "uris":
        status = 400
    return render_template(
        "admin/client.html", client=row, meta=meta, form=form, error=error, secret=secret
    ), status


# -- audit --------------------------------------------------------------------


@bp.get("/audit")
def audit():
    filters = audit_log.Filters(
        **{name: request.args.get(name, "")[:100] for name in ("user", "event", "since", "until")}
    )
    before = request.args.get("before", "")
    try:
        if request.args.get("format") == "csv":
            lines = audit_log.csv_lines(filters)
            return Response(
                stream_with_context(lines),
                mimetype="text/csv",
                headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
            )
        rows, next_before = audit_log.page(filters, _number(before))
    except audit_log.FilterError as bad:
        return render_template(
            "admin/audit.html", filters=filters, rows=[], next_before=None, bad=bad.field
        ), 400
    return render_template(
        "admin/audit.html", filters=filters, rows=rows, next_before=next_before, bad=None
    )
