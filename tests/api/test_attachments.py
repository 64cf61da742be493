"""Attachments: multipart upload with limits, scoped download, safe dispositions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import SeededWorkspace

API = "/api/v1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_upload_bytes": 4096}


async def _ticket(client: httpx.AsyncClient, ws: SeededWorkspace) -> int:
    r = await client.post(f"{API}/tickets", headers=ws.auth(), json={"subject": "files"})
    return int(r.json()["id"])


async def test_upload_list_download_and_reply(
    client: httpx.AsyncClient, workspace: SeededWorkspace
):
    tid = await _ticket(client, workspace)
    r = await client.post(
        f"{API}/tickets/{tid}/attachments",
        headers=workspace.auth("agent"),
        files={"file": ("../../etc/shot.png", PNG, "image/png")},
    )
    assert r.status_code == 201, r.text
    png = r.json()
    assert png["filename"] == "shot.png" and png["size"] == len(PNG)
    r = await client.get(f"{API}/attachments/{png['id']}", headers=workspace.auth("agent"))
    assert r.status_code == 200
    assert r.content == PNG
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"].startswith("inline")
    assert r.headers["x-content-type-options"] == "nosniff"

    # HTML claiming to be an image is served as a download, never rendered.
    fake = await client.post(
        f"{API}/tickets/{tid}/attachments",
        headers=workspace.auth(),
        files={"file": ("x.png", b"<script>alert(1)</script>", "image/png")},
    )
    r = await client.get(f"{API}/attachments/{fake.json()['id']}", headers=workspace.auth())
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.headers["content-type"] == "application/octet-stream"
    html = await client.post(
        f"{API}/tickets/{tid}/attachments",
        headers=workspace.auth(),
        files={"file": ("page.html", b"<html></html>", "text/html")},
    )
    r = await client.get(f"{API}/attachments/{html.json()['id']}", headers=workspace.auth())
    assert r.headers["content-disposition"].startswith("attachment")

    listing = await client.get(f"{API}/tickets/{tid}/attachments", headers=workspace.auth())
    assert [a["id"] for a in listing.json()["items"]] == [
        png["id"],
        fake.json()["id"],
        html.json()["id"],
    ]
    reply = await client.post(
        f"{API}/tickets/{tid}/replies",
        headers=workspace.auth(),
        json={"body": "see attached", "attachment_ids": [png["id"]]},
    )
    assert reply.status_code == 201, reply.text


async def test_upload_limits_and_types(client: httpx.AsyncClient, workspace: SeededWorkspace):
    tid = await _ticket(client, workspace)
    url = f"{API}/tickets/{tid}/attachments"
    big = await client.post(
        url, headers=workspace.auth(), files={"file": ("big.bin", b"x" * 5000, "application/x")}
    )
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "too_large"
    empty = await client.post(
        url, headers=workspace.auth(), files={"file": ("e.txt", b"", "text/plain")}
    )
    assert empty.status_code == 422
    as_json = await client.post(url, headers=workspace.auth(), json={"file": "abc"})
    assert as_json.status_code == 415
    no_file = await client.post(url, headers=workspace.auth(), files={"other": ("a", b"a")})
    assert no_file.status_code == 422
    garbage = await client.post(
        url,
        headers={**workspace.auth(), "Content-Type": "multipart/form-data; boundary=zzz"},
        content=b"--zzz\r\nnot a part",
    )
    assert garbage.status_code in (400, 422)
    missing = await client.post(
        f"{API}/tickets/{2**62}/attachments",
        headers=workspace.auth(),
        files={"file": ("a.txt", b"a", "text/plain")},
    )
    assert missing.status_code == 404


async def test_cross_workspace_download_is_404(
    client: httpx.AsyncClient, workspace: SeededWorkspace, other_workspace: SeededWorkspace
):
    tid = await _ticket(client, workspace)
    r = await client.post(
        f"{API}/tickets/{tid}/attachments",
        headers=workspace.auth(),
        files={"file": ("a.txt", b"secret", "text/plain")},
    )
    aid = r.json()["id"]
    r = await client.get(f"{API}/attachments/{aid}", headers=other_workspace.auth())
    assert r.status_code == 404
    r = await client.post(
        f"{API}/tickets/{tid}/attachments",
        headers=other_workspace.auth(),
        files={"file": ("a.txt", b"x", "text/plain")},
    )
    assert r.status_code == 404
