import pytest

from idp.account.policy import policy_errors

RULES = {
    "length": "12",
    "digit": "digit",
    "upper": "upper-case",
    "lower": "lower-case",
    "special": "special",
    "identity": "identifier",
}


@pytest.mark.parametrize(
    ("password", "broken"),
    [
        ("Correct-Horse-9", set()),
        ("Ab1@", {"length"}),
        ("abcdefghijkl", {"digit", "upper", "special"}),
        ("ABCDEFGHIJK1#", {"lower"}),
        ("abcdefghijK#x", {"digit"}),
        ("Abcdefghijk12", {"special"}),
        ("", {"length", "digit", "upper", "lower", "special"}),
        ("Pâtisserie_2024", set()),
    ],
)
def test_each_unmet_rule_is_reported(app, password, broken):
    with app.test_request_context(headers={"Accept-Language": "en"}):
        errors = " ".join(policy_errors(password, 12))
    for rule, word in RULES.items():
        assert (word in errors) == (rule in broken), (rule, errors)


def test_password_equal_to_identifier_is_refused(app):
    with app.test_request_context(headers={"Accept-Language": "en"}):
        errors = policy_errors("Alice.Martin-99", 12, username="alice.martin-99")
    assert any("identifier" in e for e in errors)
