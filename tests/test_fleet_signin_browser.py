"""Sign-in per person and roles on the fleet page (issue 24), on the real app.

`next start` and PostgreSQL run for real; Supabase's auth server is the
loopback stand-in of tests/auth_standin.py, reached by the app only through
@supabase/ssr and supabase-js. Debian's chromium (playwright-core) runs
cloud/nextjs/scripts/signin-browser.mjs: a signed-out visitor is sent to
/sign-in; a viewer sees the fleet but is offered no claim or edit form, and a
claim forged from the viewer's session is refused on the server; a
cross-origin POST is refused (CSRF); an installer claims a bridge and edits
its sensors; an admin invites a person and changes a role; a magic link signs
in; sign-out signs out; a Supabase user who is not a member gets nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import requests
from cloud_helpers import NEXTJS, CloudStack, FakeAdoptee

pytest_plugins = ["cloud_helpers"]

CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 30
# what auth-js asks of the auth server for the fleet page (tests/auth_standin.py)
AUTH_CALLS = {
    ("POST", "/auth/v1/token"),
    ("GET", "/auth/v1/user"),
    ("POST", "/auth/v1/otp"),
    ("POST", "/auth/v1/logout"),
    ("POST", "/auth/v1/invite"),
}


def action_field(name: str) -> str:
    """The no-JavaScript form field naming server action ``name`` in the built app."""
    manifest = json.loads(
        (NEXTJS / ".next" / "server" / "server-reference-manifest.json").read_text()
    )
    [action] = [k for k, v in manifest["node"].items() if v.get("exportedName") == name]
    return f"$ACTION_ID_{action}"


def enrolled(stack: CloudStack, token: str) -> FakeAdoptee:
    bridge = FakeAdoptee()
    answer = requests.post(
        f"{stack.base_url}/api/bridge/v1/enroll",
        json=bridge.body(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 202, answer.text
    return bridge


def claimed_at(stack: CloudStack, bridge: FakeAdoptee) -> list[object]:
    return [
        row[0]
        for row in stack.pg.query(
            f"select claimed_at from bridge_enrollments where serial = '{bridge.serial}'"
        )
    ]


def test_no_app_file_calls_the_auth_server_itself() -> None:
    """The app reaches Supabase Auth only through @supabase/ssr and supabase-js."""
    sources = [
        p
        for p in NEXTJS.rglob("*")
        if p.suffix in (".ts", ".tsx", ".mjs", ".js")
        and not {"node_modules", ".next"} & set(p.relative_to(NEXTJS).parts)
    ]
    assert any(p.name == "proxy.ts" for p in sources)
    offenders = [
        str(p.relative_to(NEXTJS)) for p in sources if re.search(r"auth/v1", p.read_text())
    ]
    assert offenders == []


def test_basic_auth_is_a_read_only_view(cloud_stack: CloudStack) -> None:
    cloud_stack.reset()
    bridge = enrolled(cloud_stack, cloud_stack.bridges("enroll-token", "new").stdout.strip())
    page = requests.get(
        f"{cloud_stack.base_url}/bridges", auth=cloud_stack.fleet_auth, timeout=TIMEOUT
    )
    html = page.text.replace("<!-- -->", "")  # React's markers between text pieces
    assert page.status_code == 200 and bridge.serial in html
    assert 'id="claim-form"' not in html and "Your role (viewer) cannot claim" in html
    assert f"basic auth ({cloud_stack.fleet_auth[0]})" in html
    # the claim form's request, sent anyway with the wall screen's credentials
    forged = requests.post(
        f"{cloud_stack.base_url}/bridges",
        files={
            action_field("claimAction"): (None, ""),
            "code": (None, bridge.code),
            "label": (None, "Wall Screen"),
            "timezone": (None, "Europe/Lisbon"),
        },
        headers={"Origin": cloud_stack.base_url},
        auth=cloud_stack.fleet_auth,
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert forged.status_code == 303 and forged.headers["Location"].startswith(
        "/bridges/refused?"
    ), (forged.status_code, forged.headers)
    assert claimed_at(cloud_stack, bridge) == [None]
    refused = requests.get(
        f"{cloud_stack.base_url}{forged.headers['Location']}",
        auth=cloud_stack.fleet_auth,
        timeout=TIMEOUT,
    )
    assert "Your role (viewer) cannot claim bridges" in refused.text.replace("<!-- -->", "")


def test_the_proxy_refreshes_a_session_about_to_expire(cloud_stack: CloudStack) -> None:
    cloud_stack.reset()
    cloud_stack.person("viewer@example.com", "viewer")
    before = len(cloud_stack.auth.seen)
    session = requests.Session()
    # 60 s left: inside auth-js's expiry margin, so the library refreshes it first
    session.cookies.update(cloud_stack.auth.session_cookies("viewer@example.com", lifetime=60))
    page = session.get(f"{cloud_stack.base_url}/bridges", allow_redirects=False, timeout=TIMEOUT)
    assert page.status_code == 200, page.headers
    assert 'data-person="viewer@example.com"' in page.text
    grants = [c["query"] for c in cloud_stack.auth.seen[before:] if c["path"] == "/auth/v1/token"]
    assert "grant_type=refresh_token" in grants
    refreshed = [
        c for c in page.raw.headers.getlist("Set-Cookie") if c.startswith("sb-127-auth-token")
    ]
    assert refreshed, page.headers  # the new session goes back to the browser
    # an expired session that cannot be refreshed any more is a signed-out visitor
    stale = requests.Session()
    stale.cookies.update(cloud_stack.auth.session_cookies("viewer@example.com", lifetime=-10))
    cloud_stack.auth.refresh_tokens.clear()
    answer = stale.get(f"{cloud_stack.base_url}/bridges", allow_redirects=False, timeout=TIMEOUT)
    assert answer.status_code == 307 and "/sign-in?next=" in answer.headers["Location"]


def test_sign_in_and_roles_in_chromium(cloud_stack: CloudStack) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (./provision.sh --dev --test-tools installs it)")
    cloud_stack.reset()
    seen_before = len(cloud_stack.auth.seen)
    shown = cloud_stack.api()
    cloud_stack.pg.query(
        f"update bridges set label = 'Porto Shown' where id = '{shown.bridge_id}' returning id"
    )
    token = cloud_stack.bridges("enroll-token", "new").stdout.strip()
    first, second = enrolled(cloud_stack, token), enrolled(cloud_stack, token)
    viewer = cloud_stack.person("viewer@example.com", "viewer")
    installer = cloud_stack.person("installer@example.com", "installer")
    admin = cloud_stack.person("Admin@Example.com", "admin")
    magic = cloud_stack.person("magic@example.com", "viewer")
    cloud_stack.person("leaver@example.com", "viewer")
    stranger = ("stranger@example.com", "stranger-pw-1")
    cloud_stack.auth.add_user(*stranger)
    env = {
        **os.environ,
        "BASE_URL": cloud_stack.base_url,
        "AUTH_URL": cloud_stack.auth.url,
        "BRIDGE": shown.bridge_id,
        "CODE": first.code,
        "CODE2": second.code,
        "CLAIM_FIELD": action_field("claimAction"),
        "VIEWER": ":".join(viewer),
        "INSTALLER": ":".join(installer),
        "ADMIN": ":".join(admin),
        "STRANGER": ":".join(stranger),
        "INVITE": "new.person@example.com",
        "LEAVER": "leaver@example.com",
        "MAGIC": magic[0],
        "CHROMIUM": CHROMIUM,
    }
    run = subprocess.run(
        ["node", "scripts/signin-browser.mjs"],
        cwd=NEXTJS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    base = cloud_stack.base_url

    # signed out: sent to sign in, nothing of the fleet shown
    assert seen["signedOut"]["url"] == f"{base}/sign-in?next=%2Fbridges%2F{shown.bridge_id}"
    assert "Porto Shown" not in seen["signedOut"]["html"]  # (its id is in the sign-in's `next`)
    assert "wrong email or password" in seen["wrongPassword"]

    # installer: claimed and saved, recorded under their email
    assert seen["installerBar"] == "installer@example.com"
    assert seen["claimed"] == "lisbon-chiado" and seen["installerSaved"] == "1"
    assert cloud_stack.pg.query("select made_by from bridge_config_versions") == [
        ("fleet page (installer@example.com)",)
    ]

    # viewer: the fleet, no forms, no people page; a forged claim refused on the server
    v = seen["viewer"]
    assert v["bar"] == "viewer" and shown.bridge_id in v["rows"]
    assert v["claimForms"] == 0 and "Your role (viewer) cannot claim bridges" in v["noClaim"]
    assert v["configForms"] == 0 and "cannot edit the config" in v["noEdit"]
    assert v["peopleLinks"] == 0
    assert "Your role (viewer) cannot see the people page" in v["people"]["text"]
    assert "admin@example.com" not in v["people"]["text"]
    assert seen["forged"]["status"] == 303, seen["forged"]
    assert seen["forged"]["location"].startswith("/bridges/refused?"), seen["forged"]
    assert "Your role (viewer) cannot claim bridges" in seen["forged"]["text"]
    # CSRF: a cross-origin POST with the installer's cookies does nothing
    assert seen["crossOrigin"]["status"] >= 400, seen["crossOrigin"]
    assert claimed_at(cloud_stack, second) == [None]
    assert cloud_stack.pg.query(
        "select count(*) from bridges where label in ('Forged', 'Cross Origin')"
    ) == [(0,)]

    # not a member: a clear page, no data
    assert seen["stranger"]["url"] == f"{base}/not-invited"
    assert "ask an admin to invite you" in seen["stranger"]["html"]
    assert shown.bridge_id not in seen["stranger"]["html"]
    assert "Porto Shown" not in seen["stranger"]["html"]

    # admin: invited (the stand-in got Supabase's invite), changed a role, kept an admin
    assert "new.person@example.com invited as installer" in seen["invited"]
    assert [m["kind"] for m in cloud_stack.auth.mail_to("new.person@example.com")] == ["invite"]
    assert "viewer@example.com is now installer" in seen["roleChanged"]
    assert "at least one admin" in seen["lastAdmin"]
    members = dict(
        cloud_stack.pg.query("select email, role || ' by ' || invited_by from fleet_members")
    )
    assert members["new.person@example.com"] == "installer by admin@example.com"
    assert members["viewer@example.com"].startswith("installer")
    assert members["admin@example.com"].startswith("admin")
    assert dict(seen["members"])["admin@example.com"] == "admin"
    assert "leaver@example.com removed" in seen["removed"]
    assert "leaver@example.com" not in members and "leaver@example.com" not in dict(seen["members"])
    assert seen["ownRemoveForms"] == 0  # an admin is not offered to remove themselves

    # each change is in the audit log with the person's email, from where they acted
    audit = cloud_stack.pg.query(
        "select actor, action, coalesce(bridge_id, '') as bridge,"
        " coalesce(detail ->> 'member', '') as member, source from fleet_audit_log order by id"
    )
    by_action = {(a, b, m): actor for actor, a, b, m, _ in audit}
    assert "installer@example.com" in by_action[("claim", "lisbon-chiado", "")]
    assert "installer@example.com" in by_action[("config", "lisbon-chiado", "")]
    assert by_action[("member add", "", "new.person@example.com")] == "admin@example.com"
    assert by_action[("member role", "", "viewer@example.com")] == "admin@example.com"
    assert by_action[("member remove", "", "leaver@example.com")] == "admin@example.com"
    assert all(source for actor, *_, source in audit if "example.com" in actor)

    # magic link: one mail, lands where they were going, signed in
    assert seen["magicMail"] == 1
    assert seen["magic"]["url"] == f"{base}/bridges/{shown.bridge_id}"
    assert seen["magic"]["person"] == "magic@example.com"
    # sign-out: the session is gone, the fleet closed again
    assert seen["signedOutUrl"].startswith(f"{base}/sign-in?signed_out=1")
    assert seen["afterSignOut"] == f"{base}/sign-in?next=%2Fbridges"
    assert seen["cookiesAfterSignOut"] == []
    assert seen["consoleErrors"] == []

    # the app reached the auth server only through the libraries
    calls = cloud_stack.auth.seen[seen_before:]
    assert {(c["method"], c["path"]) for c in calls} <= AUTH_CALLS | {("GET", "/auth/v1/verify")}
    assert {(c["method"], c["path"]) for c in calls} >= AUTH_CALLS
    for call in calls:
        if call["path"] == "/auth/v1/verify":
            continue  # the browser following the emailed link, as a person would
        assert re.match(r"^supabase-(ssr|js)", call["client"]), call
    assert {c["query"] for c in calls if c["path"] == "/auth/v1/token"} >= {
        "grant_type=password",
        "grant_type=pkce",
    }


def test_member_cli_keeps_an_admin(cloud_stack: CloudStack) -> None:
    cloud_stack.reset()
    added = cloud_stack.bridges("member", "add", "Boss@Example.com", "--role", "admin")
    assert "boss@example.com added as admin" in added.stderr
    bad = cloud_stack.bridges(
        "member", "add", "someone@example.com", "--role", "owner", check=False
    )
    assert (
        bad.returncode == 2 and "role: owner is not one of viewer, installer, admin" in bad.stderr
    )
    not_email = cloud_stack.bridges("member", "add", "someone", "--role", "viewer", check=False)
    assert not_email.returncode == 2 and "is not an email address" in not_email.stderr
    last = cloud_stack.bridges("member", "remove", "boss@example.com", check=False)
    assert last.returncode == 2 and "at least one admin" in last.stderr
    cloud_stack.bridges("member", "add", "fitter@example.com", "--role", "installer")
    listed = cloud_stack.bridges("member", "list").stdout
    assert re.search(r"boss@example.com\s*\|\s*admin\s*\|\s*not yet", listed), listed
    assert "fitter@example.com" in listed and "installer" in listed
    removed = cloud_stack.bridges("member", "remove", "fitter@example.com")
    assert "removed" in removed.stderr
    gone = cloud_stack.bridges("member", "remove", "fitter@example.com", check=False)
    assert gone.returncode == 2 and "no member 'fitter@example.com'" in gone.stderr
    assert cloud_stack.pg.query("select email, role from fleet_members") == [
        ("boss@example.com", "admin")
    ]


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_a_projects_other_users_cannot_read_or_change_the_people(
    cloud_stack: CloudStack, role: str
) -> None:
    cloud_stack.reset()
    cloud_stack.bridges("member", "add", "boss@example.com", "--role", "admin")
    for sql in (
        "select email from public.fleet_members;",
        "insert into public.fleet_members (email, role, invited_by) values ('me@example.com', 'admin', 'me');",
        "select public.fleet_member_put('me@example.com', 'admin', 'me');",
    ):
        run = cloud_stack.pg.psql(f"set role {role};\n{sql}", check=False)
        assert run.returncode != 0 and "permission denied" in run.stderr, (sql, run.stderr)
    assert cloud_stack.pg.query("select email from fleet_members") == [("boss@example.com",)]
