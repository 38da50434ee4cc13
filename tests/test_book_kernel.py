"""The chapters' kernel client polls in slices: a socket that sleeps through a message that has
arrived (a lost wake-up: it is seen only when the poll's timeout runs out) costs one slice, not
the cell timeout."""
import asyncio
import time
from queue import Empty

import pytest
import zmq

from capslib.book.kernel import WAKE_SECONDS, SlicedPollChannel, SlicedPollKernelManager


class SleepySocket:
    """A socket whose poll sees its message only when the poll's timeout runs out."""

    def __init__(self, holds_message: bool):
        self.holds_message, self.polls = holds_message, []

    async def poll(self, timeout_ms):
        self.polls.append(timeout_ms)
        await asyncio.sleep(timeout_ms / 1000)
        return zmq.POLLIN if self.holds_message else 0


def channel(holds_message: bool) -> SlicedPollChannel:
    ch = SlicedPollChannel.__new__(SlicedPollChannel)     # no kernel: a stand-in socket and receive
    ch.socket = SleepySocket(holds_message)

    async def recv():
        return {"msg_type": "execute_reply"}
    ch._recv = recv
    return ch


@pytest.mark.parametrize("timeout", [30.0, None])
def test_a_message_the_poll_slept_through_comes_after_one_slice(timeout):
    ch = channel(holds_message=True)
    t0 = time.monotonic()
    assert asyncio.run(ch.get_msg(timeout=timeout)) == {"msg_type": "execute_reply"}
    assert time.monotonic() - t0 < 5 * WAKE_SECONDS
    assert ch.socket.polls == [int(WAKE_SECONDS * 1000)]


def test_nothing_there_is_empty_at_the_timeout_after_slices():
    ch = channel(holds_message=False)
    t0 = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(ch.get_msg(timeout=2.5 * WAKE_SECONDS))
    assert time.monotonic() - t0 >= 2.5 * WAKE_SECONDS - 0.05
    slice_ms = int(WAKE_SECONDS * 1000)
    assert ch.socket.polls[:2] == [slice_ms] * 2 and len(ch.socket.polls) == 3      # the last slice: what was left
    assert 0.4 * slice_ms <= ch.socket.polls[2] <= 0.5 * slice_ms


def test_the_manager_hands_out_the_sliced_client():
    kc = SlicedPollKernelManager(kernel_name="python3").client()
    assert kc.shell_channel_class is SlicedPollChannel and kc.iopub_channel_class is SlicedPollChannel
