"""Files attached to enterprise filings (``/snms/api/file/upload``)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .. import store
from ..errors import Forbidden, InvalidRequest, NotFound
from .base import Actor, Services

IMAGE_LIMIT = 1024 * 1024
PDF_LIMIT = 5 * 1024 * 1024
MAX_UPLOAD = PDF_LIMIT

# (magic bytes, content type, extension, size limit)
_KINDS = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "png", IMAGE_LIMIT),
    (b"\xff\xd8\xff", "image/jpeg", "jpg", IMAGE_LIMIT),
    (b"GIF87a", "image/gif", "gif", IMAGE_LIMIT),
    (b"GIF89a", "image/gif", "gif", IMAGE_LIMIT),
    (b"BM", "image/bmp", "bmp", IMAGE_LIMIT),
    (b"%PDF-", "application/pdf", "pdf", PDF_LIMIT),
)


def sniff(data: bytes) -> tuple[str, str]:
    """Content type and extension from the file's own bytes, never from its name."""
    for magic, content_type, extension, limit in _KINDS:
        if data.startswith(magic):
            if len(data) > limit:
                raise InvalidRequest(f"文件过大：图片不超过1MB，PDF不超过5MB ({len(data)} bytes)")
            return content_type, extension
    raise InvalidRequest("仅支持图片(jpg/png/gif/bmp)或PDF文件 (unsupported file type)")


def clean_filename(name: str) -> str:
    """The uploader's file name, for display only: no controls, no surrogates, no path."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[\x00-\x1f\x7f\ud800-\udfff]", "", name).strip()[:255]


def attachment_ids(filing: Mapping[str, Any]) -> Iterator[tuple[str, int]]:
    """Every ``…Rid`` field of a filing: the attachments it refers to."""
    for key, value in filing.items():
        if isinstance(value, Mapping):
            yield from attachment_ids(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    yield from attachment_ids(item)
        elif key.endswith("Rid") and value not in (None, ""):
            yield key, _attachment_id(key, value)


def _attachment_id(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,10}", value):
        number = int(value)
    else:
        raise InvalidRequest(f"{key} 应为附件编号 (attachment id, got {value!r})")
    if not 0 < number < 2**31:
        raise InvalidRequest(f"{key} 附件编号超出范围 (attachment id out of range)")
    return number


async def link_filing_attachments(
    conn: AsyncConnection, filing: Mapping[str, Any], enterprise_id: int
) -> list[dict[str, Any]]:
    """Bind the filing's attachments to its enterprise; each may serve one filing only."""
    linked: list[dict[str, Any]] = []
    for field, attachment_id in attachment_ids(filing):
        attachment = await store.get_attachment(conn, attachment_id)
        if attachment is None:
            raise InvalidRequest(f"{field}: 附件{attachment_id}不存在 (no such attachment)")
        if attachment.enterprise_id not in (None, enterprise_id):
            raise InvalidRequest(f"{field}: 附件{attachment_id}已被其他企业使用")
        await store.link_attachment(conn, attachment_id, enterprise_id)
        linked.append({"field": field, "id": attachment_id, "sha256": attachment.sha256})
    return linked


class Attachments:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def upload(self, actor: Actor, filename: str, data: bytes) -> store.Attachment:
        principal = actor.require()
        content_type, extension = sniff(data)
        digest = hashlib.sha256(data).hexdigest()
        path = f"{uuid.uuid4()}.{extension}"
        async with self.s.change(actor) as change:
            attachment_id = await store.insert_attachment(
                change.conn,
                path=path,
                owner_id=principal.user_id,
                filename=clean_filename(filename) or path,
                content_type=content_type,
                data=data,
                sha256=digest,
            )
            await change.audit(
                "attachment.uploaded",
                path,
                {"id": attachment_id, "sha256": digest, "size": len(data)},
            )
            attachment = await store.get_attachment(change.conn, attachment_id)
        assert attachment is not None
        return attachment

    async def read(self, actor: Actor, attachment_id: int) -> tuple[store.Attachment, bytes]:
        principal = actor.require()
        async with self.s.read() as conn:
            attachment = await store.get_attachment(conn, attachment_id)
            if attachment is None:
                raise NotFound(f"附件{attachment_id}不存在 (no such attachment)")
            allowed = (
                principal.is_admin
                or attachment.owner_id == principal.user_id
                or (
                    attachment.enterprise_id is not None
                    and attachment.enterprise_id == principal.enterprise_id
                )
            )
            if not allowed:
                raise Forbidden("没有权限 (not your attachment)")
            return attachment, await store.attachment_data(conn, attachment_id)
