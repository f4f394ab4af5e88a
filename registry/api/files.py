"""``/snms/api/file``: attachments for enterprise filings."""

from __future__ import annotations

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import InvalidRequest
from ..services import Actor
from ..services.attachments import MAX_UPLOAD
from . import fields as f
from .envelope import REGISTRY, authenticated, success

routes = web.RouteTableDef()


async def _file_part(request: web.Request) -> tuple[str, bytes]:
    """The multipart field ``file``, read with a hard size cap."""
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest("请使用 multipart/form-data 上传，字段名 file")
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "file":
                continue
            data = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                data += chunk
                if len(data) > MAX_UPLOAD:
                    raise InvalidRequest("文件过大：图片不超过1MB，PDF不超过5MB")
            return part.filename or "", bytes(data)
    except (ValueError, AssertionError, HttpProcessingError) as exc:  # malformed framing
        raise InvalidRequest(f"multipart 格式错误 ({exc})") from None
    raise InvalidRequest("缺少必要的请求参数: file")


@routes.post("/snms/api/file/upload")
@authenticated
async def upload(request: web.Request, actor: Actor) -> web.Response:
    filename, data = await _file_part(request)
    attachment = await request.app[REGISTRY].attachments.upload(actor, filename, data)
    return success({"id": attachment.id, "path": attachment.path})


@routes.get("/snms/api/file/{id}")
@authenticated
async def download(request: web.Request, actor: Actor) -> web.Response:
    """The stored file (idnode extension, for reviewing a filing)."""
    attachment_id = f.required_integer(request.match_info, "id", minimum=1)
    attachment, data = await request.app[REGISTRY].attachments.read(actor, attachment_id)
    disposition = f'attachment; filename="{attachment.path}"'
    return web.Response(
        body=data,
        content_type=attachment.content_type,
        headers={"Content-Disposition": disposition},
    )
