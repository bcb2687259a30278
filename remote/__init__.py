"""Remote mentoring over WebRTC: signalling server, trainee publisher, expert console.

Talks to the application only through the bridge contracts in
:mod:`vr_trainer.app.bridge` (a latest-frame sink and a thread-safe inbox).
Nothing here is imported by ``import vr_trainer``; aiortc and aiohttp are the
``remote`` extra.
"""

PROTOCOL_VERSION = 1
