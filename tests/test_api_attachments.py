"""Attachments through the admin API over real HTTP: uploads checked by content and size,
linked to filings once, read back by their owner only.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ApiClient
from tests.factories import USER_PASSWORD, apply_json
from tests.snms_api import failed, ok

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


PDF = b"%PDF-1.7\n" + b"0" * 100


async def upload(
    api: ApiClient,
    data: bytes,
    *,
    name: str = "f.bin",
    field: str = "file",
    token: str | None = None,
) -> tuple[int, Any]:
    import aiohttp

    form = aiohttp.FormData()
    form.add_field(field, data, filename=name, content_type="application/octet-stream")
    return await api.call("POST", "/snms/api/file/upload", data=form, token=token)


async def test_upload_and_link_attachments(api: ApiClient) -> None:
    scan = ok(await upload(api, PNG, name="licence.png"))
    assert scan["path"].endswith(".png") and isinstance(scan["id"], int)
    contract = ok(await upload(api, PDF + b"0" * (2 * 1024 * 1024)))
    assert contract["path"].endswith(".pdf")
    async with api.session.get(
        f"{api.base}/snms/api/file/{scan['id']}", headers={"Authorization": f"Bearer {api.token}"}
    ) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        assert await resp.read() == PNG

    body = apply_json(1)
    body["entBasicInfo"]["orgCrtImgRid"] = scan["id"]
    body["entRegisterManageInfo"]["servSysBuildContractFileRid"] = str(contract["id"])
    ok(await api.call("POST", "/snms/api/v3/ent/apply", json=body))
    reuse = apply_json(2)
    reuse["entBasicInfo"]["orgCrtImgRid"] = scan["id"]
    assert "已被其他企业使用" in failed(
        await api.call("POST", "/snms/api/v3/ent/apply", json=reuse)
    )
    missing = apply_json(3)
    missing["entBasicInfo"]["contactCrtFrontImgRid"] = 999999
    assert "附件999999不存在" in failed(
        await api.call("POST", "/snms/api/v3/ent/apply", json=missing)
    )
    page = ok(await api.call("GET", "/snms/api/v3/ent/page"))
    assert page["totalElements"] == 1  # the refused filings left nothing behind

    user = await api.login("user1", USER_PASSWORD)
    mine = ok(await upload(api, PNG, token=user))
    async with api.session.get(
        f"{api.base}/snms/api/file/{mine['id']}", headers={"Authorization": f"Bearer {user}"}
    ) as resp:
        assert resp.status == 200
    ok(await api.call("POST", "/snms/api/v3/ent/apply", json=apply_json(4)))
    other = await api.login("user4", USER_PASSWORD)
    failed(await api.call("GET", f"/snms/api/file/{mine['id']}", token=other), status=-3)
    failed(await api.call("GET", "/snms/api/file/abc"))


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (b"hello, not a picture", "file", "仅支持"),
        (PNG + b"0" * (1024 * 1024), "file", "文件过大"),
        (PDF + b"0" * (5 * 1024 * 1024), "file", "文件过大"),
        (PNG, "other", "file"),
    ],
)
async def test_bad_uploads(api: ApiClient, data: bytes, field: str, message: str) -> None:
    assert message in failed(await upload(api, data, field=field))


async def test_upload_needs_multipart(api: ApiClient) -> None:
    assert "multipart" in failed(await api.call("POST", "/snms/api/file/upload", json={}))
    garbage = await api.call(
        "POST",
        "/snms/api/file/upload",
        data=b"--x\r\nbroken",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    failed(garbage)


async def test_upload_filename_with_control_characters(api: ApiClient) -> None:
    # Raw multipart, since a well-behaved client refuses to send such a name.
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; '
        b"filename*=UTF-8''..%5Cevil%00name.png\r\n"
        b"Content-Type: image/png\r\n\r\n" + PNG + b"\r\n--b--\r\n"
    )
    result = await api.call(
        "POST",
        "/snms/api/file/upload",
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert ok(result)["path"].endswith(".png")
