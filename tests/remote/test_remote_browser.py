"""End to end with Debian's headless Chromium driven by selenium: the expert console
against a real trainee bridge and frame loop."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from remote_helpers import green_mask, need

from remote import framecode

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]
SESSION = "web-1"


def wait(pred: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def browser() -> Any:
    from remote.browser import Chromium, chromium_available

    need(chromium_available(), "Debian chromium + chromium-driver not installed (scripts/debian-packages/remote.txt)")
    b = Chromium()
    yield b
    b.quit()


@pytest.fixture(scope="module")
def web_bridge(board_loop, server, signer) -> Any:
    from remote.peer import IceOptions
    from remote.trainee import BridgeConfig, TraineeBridge

    with TraineeBridge(server.url, signer.issue(SESSION, "trainee", "resident"),
                       BridgeConfig(ice=IceOptions(loopback_only=True), audio="none")) as bridge:
        board_loop.call(lambda loop: bridge.attach(loop), timeout_s=15)
        yield bridge


def open_console(browser, server, token: str | None, lang: str | None = None) -> None:
    browser.driver.get("about:blank")
    fragment = "&".join(f"{k}={v}" for k, v in (("token", token), ("lang", lang)) if v is not None)
    browser.driver.get(f"{server.url}/console" + (f"#{fragment}" if fragment else ""))


def live(browser, n_frames: int = 10) -> dict:
    return wait(lambda: (browser.console_state().get("framesWithId") or 0) >= n_frames and browser.console_state(),
                20, "live video in the page")


def marks_count(board_loop) -> int:
    return board_loop.call(lambda loop: len(loop.state.annotations.strokes) + len(loop.state.annotations.pins))


def test_page_receives_advancing_video(browser, web_bridge, server, signer):
    open_console(browser, server, signer.issue(SESSION, "expert", "Dr Li"))
    st = live(browser, 15)
    assert st["status"] == "live" and st["role"] == "expert" and st["canAnnotate"]
    first = st["currentFrameId"]
    time.sleep(1.0)
    st = browser.console_state()
    assert st["currentFrameId"] - first >= 15, "frame ids advance at about 30 fps"
    assert st["framesWithId"] >= 0.9 * st["framesSeen"], "the frame code reads on nearly every frame"
    dims = browser.js("const v = document.getElementById('video'); return [v.videoWidth, v.videoHeight];")
    assert dims == [320, 240 + framecode.STRIP_PX], "one eye full size (the default), the code strip above it"
    assert st["view"] == "eye" and st["viewRect"] == [0, 0, 0.5, 1]
    shown = browser.js("const r = document.getElementById('frame').getBoundingClientRect();"
                       "return [r.width, r.height];")
    assert abs(shown[0] / shown[1] - 320 / 240) < 0.02, "the expert sees the picture, not the strip"
    wait(lambda: (browser.console_state()["stats"].get("fps") or 0) > 5, 5, "connection quality from getStats")
    assert "fps" in browser.js("return document.getElementById('quality').textContent")


def test_stroke_drawn_with_pointer_events_lands_in_the_trainee_frame(browser, web_bridge, board_loop, server, signer):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    board_loop.call(lambda loop: loop.state.annotations.clear())
    open_console(browser, server, signer.issue(SESSION, "expert", "Dr Li"))
    live(browser)
    overlay = browser.driver.find_element(By.ID, "overlay")
    w, h = overlay.size["width"], overlay.size["height"]
    u0, u1, v = 0.4, 0.8, 0.5  # on the picture the expert sees: the left eye, which is half the mirror

    def at(u: float) -> tuple[int, int]:  # selenium offsets are from the element's centre
        return int(round((u - 0.5) * w)), int(round((v - 0.5) * h))

    chain = ActionChains(browser.driver, duration=10).move_to_element_with_offset(overlay, *at(u0)).click_and_hold()
    for u in np.linspace(u0, u1, 12)[1:]:
        chain = chain.move_to_element_with_offset(overlay, *at(float(u)))
    chain.release().perform()
    acks = wait(lambda: [a for a in browser.console_state()["acks"] if a["ref"] not in ("undo", "clear")
                         and not a["ref"].startswith("hold:")], 10, "the trainee's ack")
    assert acks[-1]["ok"], acks
    time.sleep(0.2)
    img = board_loop.call(lambda loop: loop.mirror.read_now())
    H, W = img.shape[:2]
    g = green_mask(img)
    row = g[int(v * H) - 3:int(v * H) + 4]
    xs = np.flatnonzero(row.any(axis=0))
    assert len(xs) > 0, "no stroke in the trainee's frame"
    # where it was drawn: from u0 to u1 of the left eye, on the row the pointer moved along
    assert abs(xs.min() / W - u0 / 2) < 0.02 and abs(xs[xs < W // 2].max() / W - u1 / 2) < 0.02, (xs.min(), xs.max(), W)
    assert g[:int(0.4 * H), :W // 2].sum() == 0 and g[int(0.6 * H):, :W // 2].sum() == 0
    marks = wait(lambda: browser.console_state()["marks"], 5, "marks list in the page")
    assert marks[0]["author"] == "Dr Li" and marks[0]["kind"] == "stroke"
    # the expert sees it in the video too (the picture is the trainee's render)
    assert "Dr Li" in browser.js("return document.getElementById('marks').textContent")


def test_reload_restores_the_marks(browser, web_bridge, board_loop, server, signer):
    n = marks_count(board_loop)
    if n == 0:
        pytest.skip("needs the stroke of the previous test")
    published = web_bridge.source.published
    browser.driver.refresh()
    st = live(browser)
    assert len(st["marks"]) == n and st["joins"] == 1
    assert web_bridge.source.published > published and marks_count(board_loop) == n
    browser.js("vrConsole.send({type: 'undo'})")
    wait(lambda: marks_count(board_loop) == n - 1, 5, "undo after reload")


def test_missing_or_wrong_token_is_refused(browser, server, signer, web_bridge):
    open_console(browser, server, None)
    st = wait(lambda: browser.console_state().get("status") == "refused" and browser.console_state(), 10, "refusal")
    assert st["error"] == "no_token" and st["joins"] == 0
    old = ("vrt1.eyJzaWQiOiJ3ZWItMSIsInJvbGUiOiJleHBlcnQiLCJzdWIiOiJleHBlcnQiLCJpYXQiOjE3OTYyMTgxNDQsImV4cCI6MTc5"
           "NjIzMjU0NCwianRpIjoiYzM5M2M0YjNmZGRlY2NiYSJ9.BjU-Dbc01_kE7xco1ngO05BRIWQE76a-KNJptYoLpfE")
    for bad in ("garbage", signer.issue(SESSION, "expert")[:-4] + "AAAA", signer.issue(SESSION, "expert", ttl_s=1,
                                                                                        now_s=1000), old):
        before = server.server.counters["refused_unauthorized"]
        open_console(browser, server, bad)
        st = wait(lambda: browser.console_state().get("status") == "refused" and browser.console_state(), 10, "refusal")
        assert st["error"] == "unauthorized" and st["joins"] == 0 and st["framesSeen"] == 0
        assert server.server.counters["refused_unauthorized"] == before + 1
        assert not browser.js("return document.getElementById('banner').hidden")
        if bad is old:
            assert "older vr-trainer" in browser.js("return document.getElementById('banner').textContent")


def test_observer_watches_but_cannot_annotate(browser, web_bridge, board_loop, server, signer):
    n = marks_count(board_loop)
    open_console(browser, server, signer.issue(SESSION, "observer", "student"))
    st = live(browser)
    assert st["role"] == "observer" and not st["canAnnotate"]
    assert browser.js("return document.getElementById('draw-tools').disabled")
    assert "disabled" in browser.js("return document.getElementById('overlay').className")
    browser.js("vrConsole.send({type: 'stroke', id: 'sneaky', frame_id: vrConsole.state.currentFrameId, "
               "points: [[0.2, 0.5], [0.4, 0.5]]}); vrConsole.send({type: 'clear'});")
    acks = wait(lambda: len(browser.console_state()["acks"]) >= 2 and browser.console_state()["acks"], 5, "refusals")
    assert all(not a["ok"] and "observers" in a["reason"] for a in acks)
    assert marks_count(board_loop) == n


def frame_screenshot(browser) -> np.ndarray:
    from PIL import Image
    from selenium.webdriver.common.by import By

    png = browser.driver.find_element(By.ID, "frame").screenshot_as_png
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_the_frame_code_is_read_but_never_visible(browser, web_bridge, board_loop, server, signer):
    """A screenshot of what the expert sees matches the resident's eye, strip rows included,
    while the page reads a frame id from every picture."""
    from PIL import Image

    open_console(browser, server, signer.issue(SESSION, "observer", "student"))
    live(browser, 15)
    time.sleep(0.5)
    st = browser.console_state()
    assert st["framesWithId"] >= 0.9 * st["framesSeen"] > 0, "the code is in the video and reads"
    shot = frame_screenshot(browser)
    mirror = board_loop.call(lambda loop: loop.mirror.read_now())
    eye = mirror[:, :mirror.shape[1] // 2]
    ref = np.asarray(Image.fromarray(eye).resize((shot.shape[1], shot.shape[0]), Image.BILINEAR)).astype(int)
    band = int(np.ceil(framecode.STRIP_PX * shot.shape[0] / eye.shape[0])) + 2  # where a visible strip would be
    top = np.abs(shot[:band, :].astype(int) - ref[:band]).mean()
    whole = np.abs(shot.astype(int) - ref).mean()
    assert whole < 20 and top < 20, (whole, top)
    # the cells would be black and white; the shown rows are the eye's own (near) flat background
    cells = shot[:band, :int(framecode.STAMP_WIDTH_PX * shot.shape[1] / eye.shape[1])].astype(int)
    assert cells.std() < 30, cells.std()
    small = np.asarray(Image.fromarray(shot).resize((eye.shape[1], eye.shape[0] + framecode.STRIP_PX)))
    assert framecode.read_rgb(small) is None and framecode.read_rgb(shot) is None
    # a frozen picture is the picture too, without the strip
    browser.js("vrConsole.setFrozen(true)")
    assert browser.js("const c = document.getElementById('freeze'); return [c.hidden, c.width, c.height];") == \
        [False, eye.shape[1], eye.shape[0]]
    frozen = frame_screenshot(browser)
    browser.js("vrConsole.setFrozen(false)")
    assert np.abs(frozen[:band].astype(int) - ref[:band]).mean() < 20 and frozen[:band].std() < 30


def test_expert_chooses_both_eyes_and_the_choice_is_kept(browser, web_bridge, board_loop, server, signer):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_console(browser, server, signer.issue(SESSION, "expert", "Dr Li"))
    live(browser)
    options = [o.text for o in Select(browser.driver.find_element(By.ID, "view-select")).options]
    assert options == ["One eye", "Both eyes side by side"]
    dims = "const v = document.getElementById('video'); return [v.videoWidth, v.videoHeight];"
    try:
        Select(browser.driver.find_element(By.ID, "view-select")).select_by_value("both")
        wait(lambda: browser.js(dims) == [640, 240 + framecode.STRIP_PX], 10, "both eyes in the video")
        st = wait(lambda: browser.console_state()["viewRect"] == [0, 0, 1, 1] and browser.console_state(), 5, "rect")
        assert st["view"] == "both" and st["framesWithId"] > 0
        shown = browser.js("const r = document.getElementById('frame').getBoundingClientRect();"
                           "return [r.width, r.height];")
        assert abs(shown[0] / shown[1] - 640 / 240) < 0.02
        # a point on the right half of the picture is in the right eye of the mirror: sent as is
        assert browser.js("return vrConsole.toMirror([0.75, 0.5])") == [0.75, 0.5]
        browser.driver.refresh()
        wait(lambda: browser.js(dims) == [640, 240 + framecode.STRIP_PX], 15, "the choice kept across a reload")
    finally:
        browser.js("vrConsole.chooseView('eye')")
        wait(lambda: browser.js(dims) == [320, 240 + framecode.STRIP_PX], 10, "one eye again")
    assert browser.js("return vrConsole.toMirror([0.5, 0.5])") == [0.25, 0.5]


def test_scenario_strip_shows_the_step_hint_critical_error_and_score(browser, web_bridge, board_loop, server,
                                                                       signer):
    from vr_trainer.app.bridge import notice_to_dict, run_finished_notice
    from vr_trainer.scenario.engine import Notice
    from vr_trainer.scenario.schema import LocalizedText as T

    steps = ["enter", "reach"]
    prompt = T(en="Insert the needle at the marked entry point", zh="在标记的进针点插入穿刺针")

    def text(el_id: str) -> str:
        return browser.js(f"return document.getElementById('{el_id}').textContent")

    open_console(browser, server, signer.issue(SESSION, "expert", "Dr Li"))
    live(browser)
    assert browser.js("return document.getElementById('scenario').hidden"), "no strip before the scenario speaks"
    first = [notice_to_dict(Notice("step_started", 0.0, prompt, step_id="enter"), steps),
             notice_to_dict(Notice("hint", 4.0, T(en="Stay lateral of the pedicle", zh="保持在椎弓根外侧"),
                                   step_id="enter"), steps),
             notice_to_dict(Notice("critical_error", 5.0, T(en="Dural tear", zh="硬脊膜撕裂"), step_id="enter",
                                   event_id="dura", critical_error="dural_tear"), steps)]
    board_loop.call(lambda loop: loop.publish_notices(first))
    wait(lambda: prompt.en in text("step-prompt"), 10, "the step prompt in the page")
    assert text("step-count") == "Step 1/2" and "Stay lateral of the pedicle" in text("step-hint")
    red = browser.js("const li = document.querySelector('#scenario-events li.critical');"
                     "return li && [li.textContent, getComputedStyle(li).color];")
    assert "Dural tear" in red[0] and red[1] == "rgb(255, 107, 91)", red
    # a Chinese viewer joining now gets the current step, in Chinese
    open_console(browser, server, signer.issue(SESSION, "observer", "student"), lang="zh")
    wait(lambda: prompt.zh in text("step-prompt"), 10, "the Chinese prompt after joining")
    assert text("step-count") == "步骤 1/2" and "保持在椎弓根外侧" in text("step-hint")
    assert "硬脊膜撕裂" in text("scenario-events")
    done = [notice_to_dict(Notice("step_completed", 9.0, step_id="enter"), steps),
            notice_to_dict(Notice("step_started", 9.0, T(en="Reach the disc", zh="到达椎间盘"), step_id="reach"),
                           steps),
            notice_to_dict(Notice("step_completed", 12.0, step_id="reach"), steps),
            run_finished_notice(12.5, 35.0, False, 70.0, len(steps))]
    board_loop.call(lambda loop: loop.publish_notices(done))
    wait(lambda: "35.0" in text("run-result"), 10, "the score")
    assert "未通过" in text("run-result") and "70" in text("run-result")
    assert text("step-count") == "所有步骤已结束" and text("step-prompt") == "" and not text("hint-text")
    assert browser.js("return document.getElementById('step-hint').hidden")
    assert "步骤 2 已完成" in text("scenario-events")


def test_expert_microphone_reaches_the_trainee(browser, web_bridge, server, signer):
    open_console(browser, server, signer.issue(SESSION, "expert", "Dr Li"))
    live(browser)
    before = web_bridge.audio_frames_in
    browser.js("return vrConsole.setMic(true)")
    wait(lambda: browser.console_state().get("micOn"), 5, "microphone on")
    wait(lambda: web_bridge.audio_frames_in > before + 25, 10, "audio frames at the trainee")


def labels(b) -> dict[str, Any]:
    return b.js("const $ = (id) => document.getElementById(id); return {"
                "lang: navigator.language, annotate: document.querySelector('#draw-tools legend').textContent,"
                "pen: document.querySelector('[data-tool=pen]').textContent, status: $('status').textContent,"
                "views: [...$('view-select').options].map((o) => o.textContent), role: $('role').textContent,"
                "mic: $('mic').textContent, banner: $('banner').textContent, htmlLang: document.documentElement.lang,"
                "title: $('undo').title, placeholder: $('note').placeholder, quality: $('quality').textContent};")


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_console_speaks_the_browsers_language_with_a_switch(web_bridge, server, signer, locale):
    from remote.browser import Chromium
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    zh = {"annotate": "标注", "pen": "✎ 画笔", "status": "直播中", "views": ["单眼", "双眼并排"], "role": "专家",
          "mic": "🎤 麦克风已关", "htmlLang": "zh-CN", "title": "撤销我的上一个标记 (Ctrl+Z)",
          "placeholder": "给学员输入一条备注"}
    en = {"annotate": "Annotate", "pen": "✎ Pen", "status": "live", "views": ["One eye", "Both eyes side by side"],
          "role": "expert", "mic": "🎤 Microphone off", "htmlLang": "en", "title": "Undo my last mark (Ctrl+Z)",
          "placeholder": "Type a note for the resident"}
    first, other = (zh, en) if locale == "zh-CN" else (en, zh)
    b = Chromium(window_size=(1100, 700), lang=locale)
    try:
        open_console(b, server, None)  # an error first: no token
        wait(lambda: b.console_state().get("status") == "refused", 10, "refusal")
        got = labels(b)
        assert got["lang"] == locale
        assert ("没有令牌" in got["banner"]) if first is zh else ("No token" in got["banner"]), got["banner"]
        open_console(b, server, signer.issue(SESSION, "expert", "Dr Li"))
        live(b)
        wait(lambda: labels(b)["views"] and labels(b)["quality"], 5, "the view selector and connection quality")
        got = labels(b)
        assert {k: got[k] for k in first} == first
        assert ("帧/秒" in got["quality"]) if first is zh else ("fps" in got["quality"]), got["quality"]
        Select(b.driver.find_element(By.ID, "lang-select")).select_by_value("en" if first is zh else "zh")
        got = labels(b)
        assert {k: got[k] for k in other} == other, "the switch changes every label"
        assert b.console_state()["status"] == "live", "the state the tools read stays in English"
        b.driver.refresh()
        live(b)
        assert labels(b)["annotate"] == other["annotate"], "the switch's choice is kept"
    finally:
        b.quit()


def test_console_follows_the_resident_leaving_and_coming_back(browser, web_bridge, board_loop, server, signer):
    """Runs last: it replaces the module's bridge."""
    from remote.peer import IceOptions
    from remote.trainee import BridgeConfig, TraineeBridge

    open_console(browser, server, signer.issue(SESSION, "expert", "Dr Li"))
    live(browser)
    web_bridge.close()
    wait(lambda: "waiting" in (browser.console_state().get("status") or ""), 10, "the page notices the resident left")
    with TraineeBridge(server.url, signer.issue(SESSION, "trainee", "resident"),
                       BridgeConfig(ice=IceOptions(loopback_only=True), audio="none")) as again:
        board_loop.call(lambda loop: again.attach(loop), timeout_s=15)
        seen = browser.console_state()["framesWithId"]
        wait(lambda: (browser.console_state()["framesWithId"] > seen + 15
                      and browser.console_state()["status"] == "live"),
             20, "video again without reloading the page")
