"""``idp user …``, ``idp client …`` and ``idp keys …``: provisioning by the operator."""

from __future__ import annotations

import json
import sys
import time

import click

from .cli import _app, _emit, _fail, cli


def _read_password(from_stdin: bool, min_length: int) -> str:
    from .account.policy import policy_errors

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if errors := policy_errors(password, min_length):
        _fail("password refused: " + " ".join(errors))
    return password


@cli.group()
def user() -> None:
    """Manage user accounts."""


def _account(username: str):
    """The account named ``username``, or a one-line failure."""
    from .users import find_by_username

    account = find_by_username(username)
    if account is None:
        _fail(f"no user {username!r}")
    return account


@user.command("add")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--profession", default="")
@click.option("--role", "roles", multiple=True)
@click.option("--phone", default=None, help="Backup mobile phone, e.g. +33612345678.")
@click.option(
    "--national-id",
    default=None,
    help="RPPS (11 digits) or ADELI number: the Pro Santé Connect identity of this user.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def user_add(
    ctx, username, email, name, profession, roles, phone, national_id, password_stdin, as_json
):
    """Create an account."""
    from .phones import PhoneError, normalize_mobile
    from .users import UserError, create_user

    app = _app(ctx)
    with app.app_context():
        try:
            phone_e164 = normalize_mobile(phone) if phone else None
        except PhoneError as exc:
            _fail(str(exc))
        password = _read_password(password_stdin, app.config["IDP"]["password"]["min_length"])
        try:
            account = create_user(
                username,
                email,
                password,
                name=name,
                profession=profession,
                roles=list(roles),
                backup_phone=phone_e164,
                national_id=national_id,
            )
        except UserError as exc:
            _fail(str(exc))
        data = {
            "username": account.username,
            "email": account.email,
            "sub": account.subject,
            "roles": account.roles,
            "national_id": account.national_id,
        }
        _emit(data, as_json, f"user {account.username} created (sub {account.subject})")


@user.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def user_list(ctx, as_json):
    """List accounts."""
    from .users import list_users

    with _app(ctx).app_context():
        rows = [
            {
                "username": u.username,
                "email": u.email,
                "name": u.name,
                "roles": u.roles,
                "backup_phone": u.backup_phone,
                "disabled": u.disabled,
                "sub": u.subject,
                "national_id": u.national_id,
            }
            for u in list_users()
        ]
    lines = []
    for r in rows:
        fields = [r["username"], r["email"], ",".join(r["roles"]) or "-"]
        lines.append("\t".join(fields + (["disabled"] if r["disabled"] else [])))
    text = "\n".join(lines) or "no users"
    _emit({"users": rows}, as_json, text)


@user.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--keep-sessions",
    is_flag=True,
    help="Leave the user's sessions, tokens and remembered browsers alive (rarely wanted).",
)
@click.pass_context
def user_set_password(ctx, username, password_stdin, keep_sessions):
    """Set a new password: the user is signed out everywhere and notified by e-mail."""
    from .account.passwords import PasswordRefused, operator_set_password

    app = _app(ctx)
    with app.app_context():
        account = _account(username)
        password = _read_password(password_stdin, app.config["IDP"]["password"]["min_length"])
        try:
            change = operator_set_password(account, password, keep_sessions=keep_sessions)
        except PasswordRefused as exc:
            _fail("password refused: " + " ".join(exc.errors.get("new", [])))
    if not change.notified:
        click.echo(
            f"warning: the notice e-mail to {username} could not be sent yet;"
            " the provider retries it for two days",
            err=True,
        )
    if keep_sessions:
        click.echo(f"password of {username} changed; sessions and tokens kept")
    else:
        ended = change.sessions_ended
        click.echo(f"password of {username} changed; {ended} session(s) ended, tokens revoked")


@user.command("unlock")
@click.argument("username")
@click.pass_context
def user_unlock(ctx, username):
    """Clear every attempt counter of an account (passwords from every address, codes)."""
    from .account.passwords import unlock_account

    with _app(ctx).app_context():
        removed = unlock_account(_account(username))
    click.echo(f"user {username} unlocked ({removed} counter(s) cleared)")


@user.command("disable")
@click.argument("username")
@click.pass_context
def user_disable(ctx, username):
    """Disable an account: its sessions and tokens stop working at once."""
    from .account.passwords import AccountActionRefused, disable_account

    with _app(ctx).app_context():
        try:
            disable_account(_account(username))
        except AccountActionRefused:
            _fail(f"{username} is the last enabled admin: enable or add another admin first")
    click.echo(f"user {username} disabled")


@user.command("enable")
@click.argument("username")
@click.pass_context
def user_enable(ctx, username):
    """Enable a disabled account again (the operator console's ``enable``)."""
    from .admin.accounts import enable

    with _app(ctx).app_context():
        enable(_account(username))
    click.echo(f"user {username} enabled")


@user.command("invite")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--profession", default="")
@click.option("--role", "roles", multiple=True)
@click.pass_context
def user_invite(ctx, username, email, name, profession, roles):
    """Create an account without a password: the user gets an e-mail with a link to choose
    one, valid [password] invite_link_hours (the operator console's "new user")."""
    from .admin.accounts import invite_user
    from .users import UserError

    with _app(ctx).app_context():
        try:
            invitation = invite_user(
                username, email, name=name, profession=profession, roles=list(roles)
            )
        except UserError as exc:
            _fail(str(exc))
    if not invitation.sent:
        click.echo(f"warning: the invitation to {username} could not be sent", err=True)
    click.echo(f"user {username} created; invitation {'sent' if invitation.sent else 'not sent'}")


@user.command("reset-second-factor")
@click.argument("username")
@click.pass_context
def user_reset_second_factor(ctx, username):
    """Remove the backup phone and every remembered browser; the user is told by e-mail."""
    from .admin.accounts import reset_second_factor

    with _app(ctx).app_context():
        reset_second_factor(_account(username))
    click.echo(f"second factor of {username} reset")


@user.command("set-national-id")
@click.argument("username")
@click.argument("national_id", required=False)
@click.option("--clear", is_flag=True, help="Remove the national identifier (and the PSC link).")
@click.pass_context
def user_set_national_id(ctx, username, national_id, clear):
    """Record the RPPS or ADELI number that links a Pro Santé Connect identity to the
    account (checked, unique); the user is notified by e-mail."""
    from .account.identity import set_national_id
    from .users import UserError

    if clear == bool(national_id):
        _fail("give either a national identifier or --clear")
    with _app(ctx).app_context():
        account = _account(username)
        try:
            stored = set_national_id(account, None if clear else national_id)
        except UserError as exc:
            _fail(str(exc))
    if stored:
        click.echo(f"national identifier of {username} set to {stored}")
    else:
        click.echo(f"national identifier of {username} cleared")


@cli.group()
def client() -> None:
    """Manage relying parties."""


@client.command("add")
@click.argument("client_id")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
@click.option("--public", is_flag=True, help="No secret; PKCE required.")
@click.option("--name", default="")
@click.option(
    "--auth-method",
    type=click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt"]),
    default="client_secret_basic",
    show_default=True,
)
@click.option("--acr", default=None, help="Default acr value demanded by this client.")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True)
@click.option("--no-refresh", is_flag=True, help="Authorization code grant only.")
@click.option(
    "--no-rotate", is_flag=True, help="Confidential clients: refresh tokens are not rotated."
)
@click.option("--id-token-alg", type=click.Choice(["RS256", "ES256"]), default=None)
@click.option(
    "--subject-type", type=click.Choice(["public", "pairwise"]), default="public", show_default=True
)
@click.option("--backchannel-logout-uri", default=None, help="Where Logout Tokens are POSTed.")
@click.option("--backchannel-logout-session-required", is_flag=True)
@click.option("--jwks-uri", default=None, help="private_key_jwt: the client's public keys.")
@click.option(
    "--jwks",
    "jwks_file",
    type=click.File("r"),
    default=None,
    help="private_key_jwt: a file holding the client's public JWK Set.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def client_add(
    ctx,
    client_id,
    redirect_uris,
    public,
    name,
    auth_method,
    acr,
    logout_uris,
    no_refresh,
    no_rotate,
    id_token_alg,
    subject_type,
    backchannel_logout_uri,
    backchannel_logout_session_required,
    jwks_uri,
    jwks_file,
    as_json,
):
    """Register a client; its secret (if it has one) is printed once."""
    from .clients import ClientError, register_client

    jwks = None
    if jwks_file is not None:
        try:
            jwks = json.loads(jwks_file.read(1_000_001))
        except ValueError as exc:
            _fail(f"the JWKS file is not JSON: {exc}")
    app = _app(ctx)
    with app.app_context():
        try:
            row, secret = register_client(
                client_id,
                list(redirect_uris),
                public=public,
                name=name,
                auth_method=auth_method,
                acr=acr,
                post_logout_redirect_uris=list(logout_uris),
                refresh=not no_refresh,
                id_token_alg=id_token_alg,
                rotate_refresh=not no_rotate,
                subject_type=subject_type,
                backchannel_logout_uri=backchannel_logout_uri,
                backchannel_logout_session_required=backchannel_logout_session_required,
                jwks_uri=jwks_uri,
                jwks=jwks,
            )
        except ClientError as exc:
            _fail(str(exc))
        registered = row.client_id
    text = f"client {registered} registered"
    if secret:
        text += f"\nclient secret (shown once): {secret}"
    _emit({"client_id": registered, "client_secret": secret}, as_json, text)


@client.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def client_list(ctx, as_json):
    """List clients."""
    from .clients import list_clients

    with _app(ctx).app_context():
        rows = [
            {
                "client_id": c.client_id,
                "name": c.name,
                "public": c.is_public,
                **{
                    k: c.client_metadata.get(k)
                    for k in (
                        "redirect_uris",
                        "post_logout_redirect_uris",
                        "grant_types",
                        "token_endpoint_auth_method",
                        "default_acr_values",
                        "subject_type",
                        "rotate_refresh_token",
                        "backchannel_logout_uri",
                        "backchannel_logout_session_required",
                        "jwks_uri",
                    )
                },
            }
            for c in list_clients()
        ]
    text = "\n".join(f"{r['client_id']}\t{' '.join(r['redirect_uris'])}" for r in rows)
    _emit({"clients": rows}, as_json, text or "no clients")


@client.command("remove")
@click.argument("client_id")
@click.pass_context
def client_remove(ctx, client_id):
    """Remove a client and everything issued to it."""
    from .clients import ClientError, remove_client

    with _app(ctx).app_context():
        try:
            remove_client(client_id)
        except ClientError as exc:
            _fail(str(exc))
    click.echo(f"client {client_id} removed")


@cli.group()
def keys() -> None:
    """Manage signing keys."""


@keys.command("rotate")
@click.option(
    "--now",
    is_flag=True,
    help="Sign with the new keys at once (a compromised key); RPs may need to refetch the JWKS.",
)
@click.pass_context
def keys_rotate(ctx, now):
    """Stage new keys: published at once, signing once cached JWKS have expired."""
    from .oidc.keys import rotate_keys
    from .oidc.server import oidc

    app = _app(ctx)
    with app.app_context():
        tokens = app.config["IDP"]["tokens"]
        keep = max(tokens["id_token_seconds"], tokens["access_token_seconds"]) + 86400
        staged = rotate_keys(
            oidc().keyring.directory, keep, **({"stage_seconds": 0} if now else {})
        )
    lines = []
    for alg, entry in staged.items():
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry["active_at"]))
        lines.append(f"{alg}: {entry['kid']} (published now, signs from {when})")
    click.echo("\n".join(lines))


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_list(ctx, as_json):
    """List signing keys."""
    from .oidc.keys import list_keys
    from .oidc.server import oidc

    with _app(ctx).app_context():
        rows = list_keys(oidc().keyring.directory)
    text = "\n".join(f"{r['kid']}\t{r.get('algorithm', '')}\t{r['status']}" for r in rows)
    _emit({"keys": rows}, as_json, text or "no keys: run 'idp init'")
