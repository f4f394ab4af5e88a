"""Native administration (create, delete, add/remove/modify values, list, home)
for a connection that has proven an identity, through the registry's Handle
operations — the same rules, permissions and audit as every other front end."""

from __future__ import annotations

from dataclasses import replace

from registry.services import Actor, Registry

from .. import codes as rc
from . import codec as c
from .answers import Replies
from .connection import Connection

LIST_MESSAGE_BYTES = 60_000
"""List answers longer than this go out as several messages, CN set on all but the last."""


class Administration:
    def __init__(self, registry: Registry, replies: Replies) -> None:
        self.registry = registry
        self.replies = replies

    async def administer(
        self, request: c.Message, version: tuple[int, int], connection: Connection
    ) -> c.Message | list[c.Message]:
        """Carry out an administrative request as the connection's identity."""
        actor = Actor(None, connection.remote, connection.identity)
        self.registry.services.admit(actor, "handle_tcp")
        handles = self.registry.handles
        op = request.opcode
        try:
            if op in (c.OC_CREATE_HANDLE, c.OC_ADD_VALUE, c.OC_MODIFY_VALUE):
                body = c.HandleValues.from_bytes(request.body)
                name = _utf8(body.handle)
                if op == c.OC_CREATE_HANDLE:
                    result = await handles.create(
                        actor,
                        name,
                        body.values,
                        overwrite=request.flag(c.FLAG_OVRW),
                        mint_suffix=request.flag(c.FLAG_MINT),
                    )
                    flags = c.FLAG_OVRW if result.overwritten else 0
                    return self.replies.response(
                        request,
                        version,
                        rc.RC_SUCCESS,
                        c.HandleOnly(result.handle.encode()).to_bytes(),
                        flags=flags,
                    )
                if op == c.OC_MODIFY_VALUE:
                    await handles.modify_values(actor, name, body.values)
                else:
                    await handles.set_values(
                        actor, name, body.values, overwrite=request.flag(c.FLAG_OVRW)
                    )
            elif op == c.OC_REMOVE_VALUE:
                remove = c.RemoveValues.from_bytes(request.body)
                await handles.remove_values(actor, _utf8(remove.handle), remove.indexes)
            elif op == c.OC_DELETE_HANDLE:
                await handles.delete(actor, _utf8(c.HandleOnly.from_bytes(request.body).handle))
            elif op == c.OC_LIST_HANDLES:
                prefix = _utf8(c.HandleOnly.from_bytes(request.body).handle)
                listing = await handles.list_handles(actor, prefix, offset=0, limit=None)
                names = [n.encode("utf-8") for n in listing.handles]
                return self._list(request, version, names)
            elif op in (c.OC_HOME_NA, c.OC_UNHOME_NA):
                prefix = _utf8(c.HandleOnly.from_bytes(request.body).handle)
                await handles.home(actor, prefix, homed=op == c.OC_HOME_NA)
            elif op == c.OC_LIST_HOMED_NAS:
                names = [f"0.NA/{p}".encode() for p in await handles.homed_prefixes()]
                return self._list(request, version, names)
        except UnicodeDecodeError:
            return self.replies.error(request, version, rc.RC_INVALID_HANDLE, "handle is not UTF-8")
        return self.replies.response(request, version, rc.RC_SUCCESS)

    def _list(
        self, request: c.Message, version: tuple[int, int], names: list[bytes]
    ) -> list[c.Message]:
        """A list answer, continued (CN) over as many messages as it takes, as
        HANDLE.NET streams long listings."""
        chunks: list[list[bytes]] = [[]]
        size = 0
        for name in names:
            if size + len(name) + 4 > LIST_MESSAGE_BYTES and chunks[-1]:
                chunks.append([])
                size = 0
            chunks[-1].append(name)
            size += len(name) + 4
        messages = [
            self.replies.response(
                request, version, rc.RC_SUCCESS, c.HandleList(tuple(chunk)).to_bytes()
            )
            for chunk in chunks
        ]
        return [
            replace(m, header=replace(m.header, flags=m.header.flags | c.FLAG_CONT))
            for m in messages[:-1]
        ] + messages[-1:]


def _utf8(raw: bytes) -> str:
    """A handle as the registry takes it (UnicodeDecodeError: RC 102)."""
    return raw.decode("utf-8")
