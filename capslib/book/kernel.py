"""The kernel manager papermill executes the chapters with: a client whose wait for a kernel
message wakes up at least every :data:`WAKE_SECONDS`.

nbclient waits for each cell's ``execute_reply`` with one ``poll`` of the shell socket, as long
as the cell timeout (20 minutes by default, :data:`capslib.book.execute.CELL_TIMEOUT`). pyzmq's
asyncio ``poll`` watches the socket's edge-triggered file descriptor, and now and then the
wake-up for a message that has arrived is lost: the poll then returns it only when its timeout
runs out (the pattern of pyzmq issue 1558). Here, on two busy cores, a chapter's cell whose kernel
had replied within seconds now and then "took" the whole cell timeout. Polling in slices of
:data:`WAKE_SECONDS` re-checks the socket's events after every slice, so a lost wake-up costs at
most that; the overall timeout is unchanged.
"""
from __future__ import annotations

import time
from queue import Empty
from typing import Any, Optional

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type

WAKE_SECONDS = 0.5


class SlicedPollChannel(AsyncZMQSocketChannel):
    """A kernel channel whose ``get_msg(timeout)`` polls in slices of at most :data:`WAKE_SECONDS`."""

    async def get_msg(self, timeout: Optional[float] = None) -> dict[str, Any]:   # type: ignore[override]
        """The next message; :class:`queue.Empty` if none came within ``timeout`` seconds (None: wait on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = WAKE_SECONDS if left is None else min(WAKE_SECONDS, left)
            if await self.socket.poll(int(step * 1000)):
                return await self._recv()
            if left is not None and left <= step:
                raise Empty


class SlicedPollClient(AsyncKernelClient):
    """An asyncio kernel client whose shell, iopub and control channels poll in slices."""
    shell_channel_class = Type(SlicedPollChannel)
    iopub_channel_class = Type(SlicedPollChannel)
    control_channel_class = Type(SlicedPollChannel)


class SlicedPollKernelManager(AsyncKernelManager):
    """nbclient's default kernel manager, handing out :class:`SlicedPollClient` clients (pass it
    to papermill as ``kernel_manager_class``)."""
    client_class = DottedObjectName("capslib.book.kernel.SlicedPollClient")
    client_factory = Type(SlicedPollClient, klass=AsyncKernelClient)
