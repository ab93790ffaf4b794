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
