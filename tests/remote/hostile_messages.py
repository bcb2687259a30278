"""A deterministic corpus of hostile data-channel messages (and a few valid ones)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator


def hostile_messages(n: int, seed: int = 5, frame_id: int = 0, big_fraction: float = 0.1) -> Iterator[str | bytes]:
    """``big_fraction`` of them are large (deep nesting, over the size limit): a data
    channel carries only about 2 MB/s in aiortc, so network tests keep it small."""
    rng = random.Random(seed)
    ok_stroke = {"v": 1, "type": "stroke", "id": "h", "frame_id": frame_id, "points": [[0.3, 0.5], [0.35, 0.5]]}
    big = [
        lambda: "[" * 5000 + "]" * 5000,
        lambda: '{"a":' * 3000 + "1" + "}" * 3000,
        lambda: "x" * rng.randint(33 * 1024, 40 * 1024),
        lambda: json.dumps({"v": 1, "type": "note", "id": "n", "text": "y" * 40000}),
    ]
    makers = [
        lambda: "{" * rng.randint(1, 50),
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))),
        lambda: json.dumps(rng.choice([None, 1, "str", [], [1, 2], True, 1e308])),
        lambda: json.dumps({"v": 1, "type": rng.choice(["drop_tables", "eval", "__proto__", "", "STROKE", "hb2"])}),
        lambda: json.dumps({"v": rng.choice([0, 2, -1, "1", True, 1.0, None, 99999999999]), "type": "undo"}),
        lambda: json.dumps({"type": "clear"}),
        lambda: json.dumps({**ok_stroke, "points": [[rng.uniform(-5, 5), rng.uniform(-5, 5)]] * 3}),
        lambda: json.dumps({**ok_stroke, "points": [[0.5, 0.5]] * 1001}),
        lambda: json.dumps({**ok_stroke, "points": []}),
        lambda: json.dumps({**ok_stroke, "points": "0.1,0.2"}),
        lambda: json.dumps({**ok_stroke, "frame_id": rng.choice([-1, 1 << 40, 1.5, "7", None])}),
        lambda: json.dumps({**ok_stroke, "id": rng.choice(["", "a" * 65, "../../etc", "<script>", "id with space"])}),
        lambda: json.dumps({**ok_stroke, "color": [2, 0, 0, 1]}),
        lambda: json.dumps({**ok_stroke, "width_px": 1e9}),
        lambda: json.dumps({**ok_stroke, "extra": {"nested": [1, 2, 3]}}),
        lambda: json.dumps(ok_stroke).replace("0.3", "NaN"),
        lambda: json.dumps(ok_stroke).replace("0.3", "Infinity"),
        lambda: json.dumps({"v": 1, "type": "laser", "frame_id": 3, "point": [0.5]}),
        lambda: json.dumps({"v": 1, "type": "pin", "id": "p", "frame_id": 1, "point": [0.5, 0.5], "label": "z" * 300}),
        lambda: json.dumps({"v": 1, "type": "hold", "frame_id": rng.randint(0, 1 << 24)}),
        lambda: json.dumps({"v": 1, "type": "hb", "seq": -5, "t_ms": 1}),
        lambda: "\ud800\udfff" + "\x00" * 10,
        lambda: json.dumps({"v": 1, "type": "stroke", "id": "ok", "frame_id": rng.randint(0, 5000),
                            "points": [[rng.random(), rng.random()] for _ in range(rng.randint(2, 50))]}),
        lambda: json.dumps({"v": 1, "type": "sync"}),
        lambda: json.dumps({"v": 1, "type": "view", "view": rng.choice(["", "EYE", "../x", "a" * 40, 5, None, "carm",
                                                                        "eye"])}),  # eye: the current one
    ]
    for _ in range(n):
        yield rng.choice(big if rng.random() < big_fraction else makers)()
