"""cloud/README.md's "copy it into your app" block, run in a fresh `create-next-app@latest` app.

The app is generated as a new user gets it (TypeScript, App Router, Next.js
16 with cacheComponents on), the README's shell block is run as written,
and the result is built with the real `next build` and served with `next
start`; the same again with Next.js 15 (proxy.ts renamed middleware.ts, as
the README says). The generated apps and their node_modules are kept under
the test cache (cloud_helpers.cache_dir) keyed by version, so a rerun only
copies and builds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cloud_helpers import (
    CLOUD,
    REPO,
    CloudStack,
    NextBuild,
    NextServer,
    cache_dir,
    contract_headers,
    encode_body,
    make_batch,
    make_series,
    npm,
)

pytest_plugins = ["cloud_helpers"]

TIMEOUT = 30
CREATE_FLAGS = [
    "--ts",
    "--app",
    "--no-tailwind",
    "--no-eslint",
    "--no-src-dir",
    "--import-alias",
    "@/*",
    "--use-npm",
    "--skip-install",
    "--disable-git",
    "--cache-components",
    "--yes",
]
README_NPM = ["install pg @supabase/ssr @supabase/supabase-js", "install -D @types/pg"]


def latest_version(package: str) -> str | None:
    run = subprocess.run(
        ["npm", "view", package, "version"], capture_output=True, text=True, timeout=120
    )
    return run.stdout.strip() or None if run.returncode == 0 else None


def generated_app(flavour: str) -> Path:
    """A pristine generated app with node_modules (pg and @types/pg added as the README says), cached."""
    cache = cache_dir()
    version = latest_version("create-next-app")
    if version is None:  # registry unreachable: the newest app already generated, if any
        cached = sorted(cache.glob("create-next-app-*/.ready"))
        if not cached:
            pytest.skip("npm's registry is unreachable and no generated app is cached")
        version = cached[-1].parent.name.removeprefix("create-next-app-")
    base = cache / f"create-next-app-{version}"
    # the README's installs are part of the key: a new package means a new app
    ready = f"{version} {'; '.join(README_NPM)}"
    if not (base / ".ready").exists() or (base / ".ready").read_text() != ready:
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(
            ["npx", "--yes", f"create-next-app@{version}", str(base), *CREATE_FLAGS],
            check=True,
            capture_output=True,
            timeout=600,
            cwd=cache,
        )
        npm(["install"], base)
        for args in README_NPM:
            npm(args.split(), base)
        (base / ".ready").write_text(ready)
    if flavour == "next16":
        return base
    older = cache / f"next15-from-create-next-app-{version}"
    if not (older / ".ready").exists() or (older / ".ready").read_text() != ready:
        shutil.rmtree(older, ignore_errors=True)
        shutil.copytree(base, older, symlinks=True)
        npm(["install", "next@15"], older)
        # cacheComponents and partialPrefetching are Next.js 16 options
        (older / "next.config.ts").write_text(
            'import type { NextConfig } from "next";\n\nconst nextConfig: NextConfig = {};\n\nexport default nextConfig;\n'
        )
        (older / ".ready").write_text(ready)
    return older


def readme_block() -> str:
    text = (CLOUD / "README.md").read_text()
    match = re.search(r"<!-- install-into-your-app[^>]*-->\n```sh\n(.*?)```", text, re.S)
    assert match, "cloud/README.md has no install-into-your-app block"
    return match.group(1)


def copy_of(pristine: Path, into: Path) -> Path:
    """The app copied to ``into``; node_modules hard-linked (the build writes only .next)."""
    shutil.copytree(
        pristine,
        into,
        symlinks=True,
        ignore=shutil.ignore_patterns("node_modules", ".next", ".ready"),
    )
    linked = subprocess.run(
        ["cp", "-al", str(pristine / "node_modules"), str(into / "node_modules")],
        capture_output=True,
    )
    if linked.returncode != 0:
        shutil.copytree(pristine / "node_modules", into / "node_modules", symlinks=True)
    return into


def without_google_fonts(app: Path) -> None:
    """The template's layout fetches Geist from Google Fonts at build time; tests reach only loopback and npm."""
    layout = app / "app" / "layout.tsx"
    text = re.sub(
        r'^import \{[^}]*\} from "next/font/google";\n', "", layout.read_text(), flags=re.M
    )
    text = re.sub(r"^const \w+ = \w+\(\{.*?\}\);\n", "", text, flags=re.M | re.S)
    text = re.sub(r"\s+className=\{`[^`]*`\}", "", text)
    assert "next/font/google" not in text and "geist" not in text.lower(), text
    layout.write_text(text)


def run_readme_block(app: Path) -> list[str]:
    """The README's block as written, with APP set to ``app``; the npm commands it ran (recorded, not run)."""
    block = re.sub(r"^APP=.*$", f"APP={app}", readme_block(), count=1, flags=re.M)
    calls = app / ".npm-calls"
    script = f'npm() {{ echo "$*" >> {calls}; }}\nset -euo pipefail\n{block}'
    run = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.fixture(scope="module", params=["next16", "next15"])
def installed_app(
    request: pytest.FixtureRequest,
    cloud_stack: CloudStack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, NextBuild, NextServer]]:
    flavour = request.param
    try:
        pristine = generated_app(flavour)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"create-next-app failed: {exc.stderr!r}")
    app = copy_of(pristine, tmp_path_factory.mktemp(flavour) / "my-app")
    without_google_fonts(app)
    assert run_readme_block(app) == README_NPM
    if flavour == "next15":
        (app / "proxy.ts").rename(app / "middleware.ts")
    build = NextBuild(app).run()
    server = cloud_stack.start_server(app=app)
    try:
        yield (
            json.loads((app / "node_modules" / "next" / "package.json").read_text())["version"],
            build,
            server,
        )
    finally:
        server.stop()


def test_readme_block_lands_the_folders_where_the_imports_expect_them(tmp_path: Path) -> None:
    app = tmp_path / "fresh-app"
    (app / "app").mkdir(parents=True)  # a fresh app: no app/api/, no lib/, no proxy.ts yet
    run_readme_block(app)
    for path in (
        "app/api/bridge/v1/ingest/route.ts",
        "app/bridges/page.tsx",
        "lib/bridge/ingest.ts",
        "lib/fleet/queries.ts",
        "proxy.ts",
        "vercel.json",
    ):
        assert (app / path).is_file(), path
    assert not (app / "app" / "api" / "v1").exists()
    run_readme_block(app)  # again (an update): the same layout, nothing nested
    assert not (app / "app" / "api" / "bridge" / "bridge").exists()
    assert not (app / "lib" / "bridge" / "bridge").exists()


def test_the_copied_routes_build_and_serve_in_a_generated_app(
    installed_app: tuple[str, NextBuild, NextServer], cloud_stack: CloudStack
) -> None:
    version, build, server = installed_app
    print(f"\nNext.js {version}: next build {build.seconds:.0f}s")
    assert "unexpected error" not in build.log and "Error" not in build.log, build.log
    api = cloud_stack.api()
    batch = make_batch(api.bridge_id, make_series(f"{api.bridge_id}-door", 4))
    answer = requests.post(
        f"{server.base_url}/api/bridge/v1/ingest",
        data=encode_body(batch, gzipped=True),
        headers=contract_headers(api.api_key, batch["batch_id"], gzipped=True),
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200 and answer.json() == {"accepted": 4, "rejected": []}, (
        answer.text
    )
    stale = requests.get(
        f"{server.base_url}/api/bridge/v1/stale?bridge_minutes=60&sensor_hours=1000",
        headers={"Authorization": f"Bearer {cloud_stack.cron_secret}"},
        timeout=TIMEOUT,
    )
    assert stale.status_code == 200 and stale.json()["ok"] is True, stale.text

    # signed out: sent to the copied sign-in page (a basic-auth challenge before issue 24)
    challenge = requests.get(f"{server.base_url}/bridges", timeout=TIMEOUT, allow_redirects=False)
    assert challenge.status_code == 307, challenge.status_code
    assert challenge.headers["Location"].endswith("/sign-in?next=%2Fbridges")
    assert requests.get(f"{server.base_url}/sign-in", timeout=TIMEOUT).status_code == 200
    fleet = requests.get(f"{server.base_url}/bridges", auth=cloud_stack.fleet_auth, timeout=TIMEOUT)
    assert fleet.status_code == 200 and api.bridge_id in fleet.text
    assert "unexpected error" not in server.output()


@pytest.mark.parametrize("tool", ["bridges", "add-bridge"])
def test_cloud_tools_show_their_usage_without_a_database(tool: str) -> None:
    """Issue 22: `cloud/bin/bridges --help` demanded DATABASE_URL before it said what it does."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    for flag in ("--help", "-h"):
        run = subprocess.run(
            ["bash", str(REPO / "cloud" / "bin" / tool), flag],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith(f"{tool}: ") and "DATABASE_URL=postgres://" in run.stdout
        assert "DATABASE_URL" not in run.stderr and "set -euo" not in run.stdout
