"""A client generated from Centinela's own /api/openapi.json drives one
whole flow against a running `centinela serve --demo`: log in, create a
tenant and a session, connect, read the QR, link it on the demo phone,
wait for READY, send a text and read its status back, and read a typed
error. Every answer is parsed into the generated models, so a document
that drifts from what the server sends fails here.

Waiting is the harness's job (`tests/openapi_client.rs`), which follows
the server's WebSocket: the flow prints `wait state SESSION STATE` or
`wait message MESSAGE` (sent, or further) and reads `came` once the event has come (the
harness fails the test if it does not). Nothing here sleeps or polls.

Usage: python flow.py BASE_URL ADMIN_PASSWORD WORK_DIR
Prints "flow passed" at the end; any failure raises.
"""

import importlib
import subprocess
import sys
from pathlib import Path

import httpx

BASE, PASSWORD, WORK = sys.argv[1], sys.argv[2], Path(sys.argv[3])
PHONE = "5491122334455"


def step(name):
    print(f"step: {name}", flush=True)


def generate():
    """Downloads the document and generates the `centinela_client` package."""
    spec = httpx.get(f"{BASE}/api/openapi.json", timeout=30)
    spec.raise_for_status()
    (WORK / "openapi.json").write_bytes(spec.content)
    out = WORK / "generated"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(WORK / "openapi.json"),
            "--output-path",
            str(out),
            "--meta",
            "none",
            "--overwrite",
        ],
        check=True,
    )
    # `--meta none` writes the package itself: make it importable by name.
    package = WORK / "pkg" / "centinela_client"
    package.parent.mkdir(parents=True, exist_ok=True)
    if not package.exists():
        package.symlink_to(out, target_is_directory=True)
    sys.path.insert(0, str(package.parent))


def api(module):
    return importlib.import_module(f"centinela_client.api.{module}")


def wait(*event):
    """Asks the harness to wait for `event` on the WebSocket; returns once it came."""
    print("wait " + " ".join(event), flush=True)
    answer = sys.stdin.readline().strip()
    assert answer == "came", f"{' '.join(event)}: {answer or 'no answer'}"


def main():
    step("generate the client from /api/openapi.json")
    generate()
    from centinela_client import AuthenticatedClient, Client
    from centinela_client.models import (
        ConnectReply,
        CreateSession,
        ErrorBody,
        LoginReply,
        MessageBody,
        MessageList,
        NewTenant,
        QrBody,
        SendText,
        SessionBody,
        SessionList,
        TenantBody,
    )
    from centinela_client.models.login import Login

    step("log in")
    public = Client(base_url=BASE, raise_on_unexpected_status=True)
    login = api("auth.post_auth_login").sync(
        client=public, body=Login(username="admin", password=PASSWORD)
    )
    assert isinstance(login, LoginReply), login
    assert login.success and login.user.username == "admin", login
    client = AuthenticatedClient(
        base_url=BASE, token=login.token, raise_on_unexpected_status=True, timeout=httpx.Timeout(30)
    )

    step("create a tenant and a session")
    tenant = api("tenants.post_api_v1_tenants").sync(
        client=client, body=NewTenant(id="clinic", name="Clinic")
    )
    assert isinstance(tenant, TenantBody) and tenant.id == "clinic", tenant
    created = api("sessions.post_api_v1_sessions").sync(
        client=client, body=CreateSession(tenant_id="clinic", name="front desk")
    )
    assert isinstance(created, SessionBody), created
    assert created.state == "DISCONNECTED" and created.tenant_id == "clinic", created
    sid = created.id
    listed = api("sessions.get_api_v1_sessions").sync(client=client)
    assert isinstance(listed, SessionList) and sid in [s.id for s in listed.sessions], listed

    step("connect")
    r = api("sessions.post_api_v1_sessions_id_connect").sync_detailed(sid, client=client)
    assert r.status_code == 202, r
    assert isinstance(r.parsed, ConnectReply) and r.parsed.outcome == "queued", r.parsed

    get_session = api("sessions.get_api_v1_sessions_id")

    def in_state(name):
        wait("state", sid, name)
        s = get_session.sync(sid, client=client)
        assert isinstance(s, SessionBody) and s.state == name, s
        return s

    step("wait for the QR and read it")
    in_state("QR")
    qr = api("sessions.get_api_v1_sessions_id_qr").sync(sid, client=client)
    assert isinstance(qr, QrBody) and qr.qr.count(",") >= 3, qr

    step("link it on the demo phone")
    scan = httpx.post(f"{BASE}/sim/scan", json={"qr": qr.qr, "phone": PHONE}, timeout=30)
    assert scan.status_code == 200, scan.text
    ready = in_state("READY")
    assert ready.phone == PHONE, ready

    step("send a text and read its status")
    sent = api("messages.post_api_v1_sessions_id_messages").sync(
        sid, client=client, body=SendText(to=PHONE, text="hola", idempotency_key="order-42")
    )
    assert isinstance(sent, MessageBody) and sent.status.value == "queued", sent
    get_message = api("messages.get_api_v1_sessions_id_messages_mid")

    wait("message", sent.id)
    m = get_message.sync(sid, sent.id, client=client)
    assert isinstance(m, MessageBody), m
    assert m.status.value in ("sent", "delivered", "read"), m
    page = api("messages.get_api_v1_sessions_id_messages").sync(sid, client=client, limit=10)
    assert isinstance(page, MessageList) and page.messages[0].id == sent.id, page

    step("a typed error")
    lenient = AuthenticatedClient(base_url=BASE, token=login.token, timeout=httpx.Timeout(30))
    missing = get_session.sync_detailed("zz-unknown", client=lenient)
    assert missing.status_code == 404, missing
    assert isinstance(missing.parsed, ErrorBody), missing.parsed
    assert missing.parsed.error.code == "not_found" and not missing.parsed.success, missing.parsed

    step("disconnect")
    stopped = api("sessions.post_api_v1_sessions_id_disconnect").sync(sid, client=client)
    assert isinstance(stopped, SessionBody), stopped
    in_state("DISCONNECTED")
    print("flow passed", flush=True)


if __name__ == "__main__":
    main()
