"""Where a password sign-in goes beside its hash: pyinstrument (``[bench]`` extra), else cProfile.

Provisions a provider like ``bench/perf.py`` (SQLite) at the REAL argon2
defaults (``idp.config.DEFAULTS["password"]``), then drives ``--count`` fresh
logins through the Flask test client: ``/authorize`` → login page → password
POST, each step timed in wall time and CPU time (``time.process_time``: every
thread of the process, argon2's lane threads included). It prints beside them
the bare argon2id ``PasswordHasher.verify`` measured in this process, in the
same run, and counts every argon2 call the steps make (a second verify or hash
would show there). Then the same logins again under the profiler.

``--gunicorn SECONDS`` then serves the provider with the shipped settings (one
worker pinned to ``--cpu``, four browsers on the other CPU, like ``make
bench``'s password row) and reports the worker's CPU time per login beside the
bare verify's, timed on that CPU just before and after the load: the CPU ratio
does not move when other processes share the machine, the rate ratio does.
``IDP_HASH_THREADS`` / ``IDP_HASH_NICE`` in the environment reach gunicorn (A/B).

    PYTHONPATH=. python bench/profile_login.py [--count 30] [--cpu 0] [--plain] [--gunicorn 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.perf import PASSWORD, Bench, auth_params, code_of, form_of, hasher_for, in_process  # noqa: E402


def timed(fn):
    """(result, wall seconds, CPU seconds of the whole process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w0, time.process_time() - c0


def worker_cpu(master: int) -> tuple[int, float]:
    """(pid, CPU seconds) of the one worker of ``master``: every thread, the exited ones too."""
    (pid,) = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(pid), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served(bench: Bench, seconds: float, cpu: int | None, bare: Callable[[int], list]) -> None:
    """The same logins over HTTP, 4 browsers on one worker (``make bench``'s password row).

    The worker's CPU time per login (``/proc``: every thread, argon2's lanes too) is
    what the sign-in costs beside its hash whatever else runs on the machine; the rate
    depends on what else runs, so the bare verify is timed again on the server's CPU
    just before and just after the load (the machine is shared: bench/README.md)."""
    from bench.perf import Browser, free_port, gunicorn, load, pinned

    cpus = sorted(os.sched_getaffinity(0) if cpu is None else range(os.cpu_count() or 1))
    os.sched_setaffinity(0, set(cpus))
    server_cpu = {cpu if cpu is not None else cpus[0]}
    client_cpu = (set(cpus) - server_cpu) or server_cpu
    bench.write_config(free_port())
    hashing = {k: v for k, v in os.environ.items() if k in ("IDP_HASH_THREADS", "IDP_HASH_NICE")}
    with gunicorn(
        "idp:create_app()",
        workers=1,
        env={**bench.env, **hashing},  # A/B of the hash pool's settings
        cwd=bench.root,
        cpus=server_cpu,
        log=bench.root / "gunicorn.log",
        port=bench.port,
    ) as (master, _port):
        browsers = [Browser(bench) for _ in range(4)]
        client = bench.clients["RS256"]
        with pinned(client_cpu):
            load(lambda i: browsers[i].login(client, "pw"), threads=4, seconds=2)  # warm
        with pinned(server_cpu):
            limits = bare(5)
        with pinned(client_cpu):
            _pid, before = worker_cpu(master)
            stats = load(lambda i: browsers[i].login(client, "pw"), threads=4, seconds=seconds)
            _pid, after = worker_cpu(master)
        with pinned(server_cpu):
            limits += bare(5)
    per_login = (after - before) / stats.ops * 1000
    bare_wall = statistics.median(s[0] for s in limits)
    bare_cpu = statistics.median(s[1] for s in limits)
    print(
        f"gunicorn {hashing or ''}, 1 worker on CPU {sorted(server_cpu)},"
        f" 4 browsers on {sorted(client_cpu)}:"
        f" {stats.rate:.2f} logins/s ({stats.ops}, errors {len(stats.errors)}),"
        f" worker CPU {per_login:.1f} ms per login"
        f" = bare verify {bare_cpu * 1000:.1f} ms + {per_login - bare_cpu * 1000:.1f} ms;"
        f" CPU ratio {bare_cpu * 1000 / per_login:.2f};"
        f" rate × bare verify (wall {bare_wall * 1000:.1f} ms) = {stats.rate * bare_wall:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument("--plain", action="store_true", help="no profiler: timings only")
    parser.add_argument(
        "--gunicorn",
        type=float,
        default=0,
        metavar="SECONDS",
        help="also serve it with the shipped gunicorn settings (1 worker on --cpu, the browsers "
        "on the other CPU) for SECONDS, and report the worker's CPU time per login",
    )
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    from argon2 import PasswordHasher

    from idp.config import DEFAULTS

    argon2 = {
        k: DEFAULTS["password"][k]
        for k in ("argon2_time_cost", "argon2_memory_kib", "argon2_parallelism")
    }
    calls: Counter = Counter()
    for name in ("hash", "verify", "check_needs_rehash"):
        original = getattr(PasswordHasher, name)

        def counted(self, *a, _name=name, _original=original, **kw):
            calls[_name] += 1
            return _original(self, *a, **kw)

        setattr(PasswordHasher, name, counted)

    root = Path(tempfile.mkdtemp(prefix="idp-profile-"))
    try:
        bench, app = in_process(root, argon2)
        client = bench.clients["RS256"]

        hasher, stored = hasher_for(argon2)

        def bare(count: int) -> list[tuple[float, float]]:
            return [timed(lambda: hasher.verify(stored, PASSWORD))[1:] for _ in range(count)]

        steps: dict[str, list[tuple[float, float]]] = {"authorize": [], "page": [], "POST": []}
        per_login: list[Counter] = []

        def one_login(record: bool) -> None:
            web = app.test_client()  # a fresh browser: no cookies, no SSO session
            params, state, _nonce, _verifier = auth_params(client)
            before = calls.copy()
            answer, w1, c1 = timed(lambda: web.get("/authorize", query_string=params))
            login = urlsplit(answer.location)
            url = login.path + "?" + login.query
            page, w2, c2 = timed(lambda: web.get(url))
            action, hidden = form_of(page.text, 'name="password"')
            form = {**hidden, "username": "pw", "password": PASSWORD}
            done, w3, c3 = timed(lambda: web.post(action or url, data=form))
            code_of(done.location, state, bench.issuer)
            if record:
                steps["authorize"].append((w1, c1))
                steps["page"].append((w2, c2))
                steps["POST"].append((w3, c3))
                per_login.append(calls - before)

        def logins(count: int, record: bool) -> None:
            for _ in range(count):
                one_login(record)

        logins(3, record=False)  # warm: imports, caches, the dummy hash, the first statements
        bare(2)
        baseline = bare(args.count // 2 or 1)
        logins(args.count, record=True)
        baseline += bare(args.count // 2 or 1)

        def show(name: str, samples: list[tuple[float, float]]) -> None:
            wall = statistics.median(s[0] for s in samples) * 1000
            cpu = statistics.median(s[1] for s in samples) * 1000
            print(
                f"  {name:<24} wall {wall:7.1f} ms   CPU {cpu:7.1f} ms   (median of {len(samples)})"
            )

        print(f"argon2id {argon2}, CPUs {sorted(os.sched_getaffinity(0))} of {os.cpu_count()}")
        show("bare verify", baseline)
        for name, samples in steps.items():
            show(name, samples)
        loop = [tuple(map(sum, zip(*s, strict=True))) for s in zip(*steps.values(), strict=True)]
        show("authorize+page+POST", loop)
        hash_wall = statistics.median(s[0] for s in baseline)
        loop_wall = statistics.median(s[0] for s in loop)
        print(f"  bare verify / loop = {hash_wall / loop_wall:.2f}")
        print(f"  argon2 calls per login: {dict(sum(per_login, Counter()))} over {len(per_login)}")

        if not args.plain:
            try:
                from pyinstrument import Profiler
            except ImportError:
                Profiler = None  # noqa: N806
            if Profiler is not None:
                profiler = Profiler(interval=0.0005)
                profiler.start()
                logins(args.count, record=False)
                profiler.stop()
                print(profiler.output_text(unicode=True, color=False, show_all=False))
            else:
                import cProfile
                import pstats

                with cProfile.Profile() as prof:
                    logins(args.count, record=False)
                pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        from idp.models import db

        with app.app_context():
            db.engine.dispose()
        if args.gunicorn:
            served(bench, args.gunicorn, args.cpu, bare)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
