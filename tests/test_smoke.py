from tests.actions import LoginActions
from tests.factories import make_client, make_user


def test_code_flow_smoke(app, client):
    with app.app_context():
        make_user()
        _, secret = make_client()
    login = LoginActions(client)
    result = login.login_through()
    assert result["state"] == "st-123"
    assert result["iss"] == "http://idp.test"
    response = login.exchange(result["code"], secret=secret)
    assert response.status_code == 200, response.text
    print(response.json)
    info = client.get(
        "/userinfo", headers={"Authorization": "Bearer " + response.json["access_token"]}
    )
    print(info.status_code, info.json)
