"""Where a token grant spends its time: pyinstrument (``[bench]`` extra), else cProfile.

Provisions a provider like ``bench/perf.py`` (SQLite, cheap argon2: only the
refresh is profiled), signs in once through the Flask test client, then runs
``--count`` rotating refresh grants (``--grant code``: authorization_code
exchanges, the codes minted first) in this process under the profiler. No
gunicorn: the HTTP server's own cost is the "Flask hello" row of ``make bench``.

    PYTHONPATH=. python bench/profile_refresh.py [--count 2000] [--alg RS256|ES256] [--all]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.perf import PASSWORD, auth_params, code_of, form_of, in_process  # noqa: E402

CHEAP = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--alg", choices=("RS256", "ES256"), default="RS256")
    parser.add_argument("--plain", action="store_true", help="no profiler: grants/s only")
    parser.add_argument("--all", action="store_true", help="pyinstrument: show library frames")
    parser.add_argument(
        "--grant",
        choices=("refresh", "code"),
        default="refresh",
        help="code: authorization_code exchanges (codes minted first, outside the profile)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="idp-profile-"))
    try:
        bench, app = in_process(root, CHEAP)
        client = bench.clients[args.alg]
        basic = {"Authorization": client.basic()}
        web = app.test_client()
        params, state, _nonce, verifier = auth_params(client)
        login = urlsplit(web.get("/authorize", query_string=params).location)
        page = web.get(login.path + "?" + login.query)
        action, hidden = form_of(page.text, 'name="password"')
        done = web.post(
            action or login.path + "?" + login.query,
            data={**hidden, "username": "pw", "password": PASSWORD},
        )
        rp = app.test_client()  # the relying party's back channel: no browser cookies

        def exchange(code: str, verifier: str) -> dict:
            return rp.post(
                "/token",
                headers=basic,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": "http://127.0.0.1:9/callback",
                    "code_verifier": verifier,
                },
            ).json

        refresh = exchange(code_of(done.location, state, bench.issuer), verifier)["refresh_token"]

        def mint(count: int) -> list[tuple[str, str]]:
            """Codes from the browser's SSO session, each with its PKCE verifier."""
            minted = []
            for _ in range(count):
                params, state, _nonce, verifier = auth_params(client)
                answer = web.get("/authorize", query_string=params)
                minted.append((code_of(answer.location, state, bench.issuer), verifier))
            return minted

        codes = mint(args.count + 50) if args.grant == "code" else []

        def exchanges(count: int) -> None:
            for _ in range(count):
                answer = exchange(*codes.pop())
                assert "id_token" in answer, answer

        def refreshes(count: int) -> None:
            nonlocal refresh
            for _ in range(count):
                answer = rp.post(
                    "/token",
                    headers=basic,
                    data={"grant_type": "refresh_token", "refresh_token": refresh},
                )
                refresh = answer.json["refresh_token"]

        grants = exchanges if args.grant == "code" else refreshes
        grants(50)  # warm: imports, caches, the first statements
        try:
            from pyinstrument import Profiler
        except ImportError:
            Profiler = None  # noqa: N806
        t0 = time.perf_counter()
        if args.plain:
            grants(args.count)
            elapsed = time.perf_counter() - t0
        elif Profiler is not None:
            profiler = Profiler(interval=0.0005)
            profiler.start()
            grants(args.count)
            profiler.stop()
            elapsed = time.perf_counter() - t0
            print(profiler.output_text(unicode=True, color=False, show_all=args.all))
        else:
            import cProfile
            import pstats

            with cProfile.Profile() as prof:
                grants(args.count)
            elapsed = time.perf_counter() - t0
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        print(
            f"{args.count} {args.grant} grants ({args.alg}) in {elapsed:.2f} s"
            f"{'' if args.plain else ' under the profiler'}: "
            f"{args.count / elapsed:.0f}/s"
        )
        from idp.models import db

        with app.app_context():
            db.engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
