import pytest

from idp.config import ConfigError, load_settings


def test_defaults_match_design():
    settings = load_settings({})
    assert settings["issuer"] == "http://127.0.0.1:5000"
    assert settings["mfa"]["otp_ttl_seconds"] == 300
    assert settings["password"]["min_length"] == 12
    assert settings["acr"] == {"pwd": "urn:idp:acr:pwd", "mfa": "urn:idp:acr:2fa"}


def test_toml_file_then_mapping_override(tmp_path):
    path = tmp_path / "idp.toml"
    path.write_text('issuer = "https://id.example"\n[tokens]\naccess_token_seconds = 120\n')
    settings = load_settings(path)
    assert settings["issuer"] == "https://id.example"
    assert settings["tokens"]["access_token_seconds"] == 120
    assert settings["tokens"]["id_token_seconds"] == 600


def test_environment_supplies_secrets(monkeypatch):
    monkeypatch.setenv("IDP_SECRET_KEY", "from-env")
    monkeypatch.setenv("IDP_DATABASE_URL", "postgresql+psycopg://u@h/db")
    settings = load_settings({})
    assert settings["secret_key"] == "from-env"
    assert settings["database"]["url"] == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"isuer": "http://x"}, "isuer"),
        ({"mail": {"sever": "x"}}, "mail.sever"),
        ({"mail": {"port": "25"}}, "mail.port"),
        ({"mfa": {"required_roles": "admin"}}, "mfa.required_roles"),
        ({"tokens": {"access_token_seconds": True}}, "tokens.access_token_seconds"),
        ({"issuer": "http://x/"}, "issuer"),
        ({"issuer": "ftp://x"}, "issuer"),
        ({"keys": {"algorithm": "HS256"}}, "keys.algorithm"),
        ({"sms": {"backend": "http"}}, "sms.url"),
        ({"database": "sqlite://"}, "database"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_key(config, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(config)


def test_invalid_toml_is_reported(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("issuer = ")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(path)


def test_example_config_is_complete_and_valid():
    import tomllib
    from pathlib import Path

    from idp.config import DEFAULTS

    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    data = tomllib.loads(example.read_text())

    def keys(tree, prefix=""):
        out = set()
        for key, value in tree.items():
            out |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
        return out

    assert keys(data) == keys(DEFAULTS)
    assert load_settings(example)["issuer"] == DEFAULTS["issuer"]


@pytest.fixture
def bare_environment(monkeypatch):
    for name in ("IDP_CONFIG", "IDP_SECRET_KEY", "IDP_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


# Port 1 of loopback: nothing listens there; start-up must not need a connection.
SHARED_DB = "postgresql+psycopg://idp:unused@127.0.0.1:1/idp"


def test_shared_database_without_a_secret_key_refuses_to_start(
    tmp_path, shared_keys, bare_environment
):
    """Each node would write its own instance/secret_key: codes, throttles and
    form tokens would break across nodes."""
    from idp import create_app

    instance = tmp_path / "instance"
    settings = {
        "database": {"url": SHARED_DB},
        "instance_dir": str(instance),
        "keys": {"dir": str(shared_keys)},
    }
    with pytest.raises(ConfigError, match=r"^secret_key: .*\$IDP_SECRET_KEY") as raised:
        create_app(settings)
    assert "\n" not in str(raised.value)
    assert not instance.exists()  # no per-node key written


def test_shared_database_starts_with_the_secret_key_from_the_environment(
    tmp_path, shared_keys, bare_environment, monkeypatch
):
    from idp import create_app

    monkeypatch.setenv("IDP_SECRET_KEY", "one-key-for-every-node")
    instance = tmp_path / "instance"
    app = create_app(
        {
            "database": {"url": SHARED_DB},
            "instance_dir": str(instance),
            "keys": {"dir": str(shared_keys)},
        }
    )
    assert app.config["SECRET_KEY"] == "one-key-for-every-node"
    assert not instance.exists()


@pytest.mark.parametrize(
    "url",
    ["postgresql://u@h/db", "postgresql+psycopg://u@h/db", "mysql+pymysql://u@h/db", "oracle://h"],
)
def test_every_non_sqlite_database_needs_a_secret_key(url, bare_environment):
    with pytest.raises(ConfigError, match="^secret_key: "):
        load_settings({"database": {"url": url}})
    assert load_settings({"database": {"url": url}, "secret_key": "k"})["secret_key"] == "k"


@pytest.mark.parametrize(
    "url", ["sqlite:///instance/idp.sqlite3", "sqlite://", "sqlite+pysqlite:///x.db"]
)
def test_sqlite_keeps_a_generated_secret_key_in_the_instance_folder(
    url, tmp_path, bare_environment
):
    from idp.config import resolve_secret_key

    settings = load_settings({"database": {"url": url}, "instance_dir": str(tmp_path / "i")})
    key = resolve_secret_key(settings)
    assert len(key) >= 32
    assert (tmp_path / "i" / "secret_key").read_text() == key
    assert resolve_secret_key(settings) == key  # every worker and restart: the same key


def test_idp_command_refuses_a_shared_database_without_a_secret_key_in_one_line(
    tmp_path, bare_environment, monkeypatch
):
    from click.testing import CliRunner

    from idp.cli import cli

    monkeypatch.chdir(tmp_path)  # the default instance folder is ./instance
    monkeypatch.setenv("IDP_DATABASE_URL", SHARED_DB)
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: secret_key: ")
    assert "$IDP_SECRET_KEY" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "instance").exists()
