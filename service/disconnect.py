"""Work stops when its client goes: a request whose connection closes is cancelled.

Starlette keeps running an endpoint after its client disconnected, until it returns: a batch
of slow files went on holding the parse workers for minutes after the client gave up. This
middleware watches the connection once the request body has been read (and while it is being
read) and cancels the request's task when the client disconnects; the cancellation reaches
the engine, which stops the parses of that request (see :mod:`service.parse_pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CancelOnDisconnectMiddleware"]

log = logging.getLogger("service.disconnect")


class CancelOnDisconnectMiddleware:
    """Cancels an HTTP request's handling when its client disconnects."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; cancel its handler when the client disconnects before the response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read = asyncio.Event()
        gone = asyncio.Event()

        async def app_receive() -> Message:
            if body_read.is_set():  # nothing but a disconnect can come now: wait for it
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                await asyncio.Future()  # never returns: the task is cancelled below
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def watch() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        answered = False  # the whole response was sent: a disconnect now ends nothing early

        async def app_send(message: Message) -> None:
            nonlocal answered
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True

        app_task = asyncio.ensure_future(self.app(scope, app_receive, app_send))
        watcher = asyncio.ensure_future(watch())
        gone_wait = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({app_task, gone_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not app_task.done() and not answered:
                log.info("%s %s: the client disconnected; its work is cancelled", scope["method"], scope["path"])
                app_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await app_task
                return
            await app_task
        finally:
            for task in (watcher, gone_wait, app_task):
                if not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(watcher, gone_wait, return_exceptions=True)
