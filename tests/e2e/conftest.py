"""Fixtures of the end-to-end suite: edges, the provider, browsers, relying parties.

``provider`` (package scope) writes a TOML configuration whose ``[mail]`` points
at ``mailbox`` (aiosmtpd) and ``[sms]`` at ``sms_gateway`` (HTTP), provisions
everything through the ``idp`` command (``init``, ``user add``, ``client add
--json``), and runs ``gunicorn 'idp:create_app()'`` with two workers until the
last test of ``tests/e2e`` is done. Package scope matters on PostgreSQL: the
server must be gone before another suite drops and recreates the schema.

Building blocks live beside this file: ``server.py`` (configuration, ``idp``
command, gunicorn), ``edges.py`` (SMTP and SMS servers), ``parties.py``
(``UserAgent`` and ``RelyingParty``), ``browser.py`` (Chromium).
"""

from __future__ import annotations

import os

import pytest

from .browser import CHROMIUM, BrowserSession, RelyingPartyPages, launch_chromium
from .edges import SMS_TOKEN, Mailbox, SmsGateway
from .parties import RelyingParty, UserAgent
from .server import (
    PG_URL,
    Provider,
    base_settings,
    free_port,
    provision,
    reset_postgres,
    serving,
    to_toml,
)

SHORT_OTP_SECONDS = 2


@pytest.fixture(scope="package")
def mailbox():
    """A real SMTP server on loopback for the whole package."""
    box = Mailbox()
    box.start(free_port())
    yield box
    box.stop()


@pytest.fixture(scope="package")
def gateway():
    """The HTTP SMS gateway for the whole package; tests ask for ``sms_gateway``."""
    started = SmsGateway(SMS_TOKEN)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def sms_gateway(gateway):
    """The SMS gateway, answering 200 at once unless the test says otherwise."""
    gateway.reset()
    yield gateway
    gateway.reset()


@pytest.fixture(scope="package")
def provider(tmp_path_factory, mailbox, gateway) -> Provider:
    workdir = tmp_path_factory.mktemp("e2e")
    issuer = f"http://127.0.0.1:{free_port()}"
    database_url = PG_URL or f"sqlite:///{workdir / 'idp.sqlite3'}"
    if PG_URL:
        reset_postgres(PG_URL)
    settings = base_settings(
        issuer,
        database_url,
        workdir / "keys",
        smtp_port=mailbox.port,
        sms_url=gateway.url,
        sms_token=SMS_TOKEN,
    )
    config_path = workdir / "idp.toml"
    config_path.write_text(to_toml(settings))
    # ``IDP_*`` variables would override the TOML file (idp.config): none reaches the server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env["IDP_CONFIG"] = str(config_path)
    found = Provider(
        issuer, issuer, workdir, config_path, settings, env, log_path=workdir / "gunicorn.log"
    )
    provision(found)
    with pytest.MonkeyPatch.context() as patch:
        # The RP talks to an http:// issuer, a declared test set-up.
        patch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
        with serving(found):
            yield found


@pytest.fixture(scope="package")
def short_otp_node(provider) -> Provider:
    """A second node (same issuer, database and keys) whose codes live 2 seconds."""
    node = provider.node("short-otp", free_port(), mfa={"otp_ttl_seconds": SHORT_OTP_SECONDS})
    with serving(node, workers=1):
        yield node


@pytest.fixture
def new_agent(provider):
    """``new_agent()`` → a fresh browser (no cookies); closed after the test."""
    made: list[UserAgent] = []

    def make(node: Provider | None = None) -> UserAgent:
        made.append(UserAgent(node or provider))
        return made[-1]

    yield make
    for agent in made:
        agent.close()


@pytest.fixture
def agent(new_agent) -> UserAgent:
    return new_agent()


@pytest.fixture
def new_rp(provider):
    """``new_rp('confidential' | 'second' | 'public')`` → a relying party."""
    made: list[RelyingParty] = []

    def make(name: str = "confidential") -> RelyingParty:
        made.append(RelyingParty(provider, provider.clients[name]))
        return made[-1]

    yield make
    for rp in made:
        rp.close()


@pytest.fixture
def rp(new_rp) -> RelyingParty:
    return new_rp("confidential")


# -- a real browser --------------------------------------------------------------


@pytest.fixture(scope="package")
def rp_pages(tmp_path_factory):
    """The RPs' redirect URIs, served over HTTPS for the browser."""
    pages = RelyingPartyPages()
    pages.start(tmp_path_factory.mktemp("rp-pages"))
    yield pages
    pages.stop()


@pytest.fixture(scope="package")
def chromium(rp_pages):
    """Debian's Chromium through Playwright, launched once for the package."""
    if not CHROMIUM.exists():
        if os.environ.get("IDP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"IDP_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} not installed (set IDP_REQUIRE_BROWSER=1 to make this fail)")
    with launch_chromium(rp_pages) as browser:
        yield browser


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so ``browser`` knows if the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def browser(request, chromium, rp_pages):
    """A fresh French browser profile; a screenshot named after the test is kept if it fails."""
    session = BrowserSession(chromium, rp_pages)
    yield session
    report = getattr(request.node, "report_call", None)
    session.close(failed_as=request.node.name if report is not None and report.failed else None)


# -- Pro Santé Connect -------------------------------------------------------------

PSC_USERS = {"psc-alice": "10000000009", "psc-bruno": "10101010105"}


@pytest.fixture(scope="package")
def psc_node(provider, tmp_path_factory) -> Provider:
    """A node of its own issuer with ``[psc]`` pointing at the stand-in (one node process
    per run, tests/e2e/psc.py); users with national identifiers provisioned."""
    from . import psc

    port = free_port()
    standin = psc.start(port, tmp_path_factory.mktemp("psc") / "standin.log")
    try:
        node = own_issuer(
            provider.node("psc", port, psc=standin.settings(f"http://127.0.0.1:{port}"))
        )
        for username, national_id in PSC_USERS.items():
            node.cli(
                "user", "add", username, "--email", f"{username}@exemple.fr",
                "--national-id", national_id, "--password-stdin",
                stdin=provider.users["alice"]["password"] + "\n",
            )  # fmt: skip
        node.standin = standin
        with serving(node, workers=1):
            yield node
    finally:
        psc.stop(standin)


def own_issuer(node: Provider) -> Provider:
    """The node as its own issuer (PSC sends the browser back to the issuer's callback)."""
    import dataclasses

    settings = {**node.settings, "issuer": node.base_url}
    node.config_path.write_text(to_toml(settings))
    return dataclasses.replace(node, issuer=node.base_url, settings=settings)
