"""A fake viewer in its own process (as a browser would be): reconnect cycles or a
hostile flood. Prints one JSON line with what it saw.

    python viewer_process.py cycles URL TOKEN N
    python viewer_process.py hostile URL TOKEN N
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakeviewer import FakeViewer
from hostile_messages import hostile_messages

from remote.peer import IceOptions, configure_ice


async def cycles(url: str, token: str, n: int) -> dict:
    times, ok = [], 0
    for k in range(n):
        t0 = time.monotonic()
        async with FakeViewer(url, token) as v:
            await v.wait_frames(2, timeout_s=15)
            ok += 1
            await v.close(bye=k % 2 == 0)  # half leave politely, half just vanish
        times.append(time.monotonic() - t0)
    return {"cycles": n, "ok": ok, "cycle_s_max": max(times), "cycle_s_median": sorted(times)[len(times) // 2]}


async def hostile(url: str, token: str, n: int) -> dict:
    async with FakeViewer(url, token) as v:
        await v.wait_frames(2)
        sent = 0
        for m in hostile_messages(n, frame_id=v.latest_id() or 0, big_fraction=0.01):
            if isinstance(m, str):
                try:
                    m.encode("utf-8")
                except UnicodeEncodeError:
                    m = m.encode("utf-8", "surrogatepass")
            v.send(m)
            sent += 1
            if sent % 200 == 0:
                await asyncio.sleep(0)
                while v.dc.bufferedAmount > 1 << 20:
                    await asyncio.sleep(0.01)
        await v.wait_for(lambda: v.dc.bufferedAmount == 0, 60, "send buffer drained")
        v.send({"type": "stroke", "id": "after", "frame_id": v.latest_id(), "points": [[0.25, 0.5], [0.35, 0.5]]})
        ack = await v.wait_for(lambda: [a for a in v.of_type("ack") if a.get("ref") == "after"], 20, "ack")
    return {"sent": sent, "after_ok": ack[-1]["ok"], "acks": len(v.of_type("ack"))}


def main() -> None:
    mode, url, token, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    configure_ice(IceOptions(loopback_only=True))
    res = asyncio.run({"cycles": cycles, "hostile": hostile}[mode](url, token, n))
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
