// The expert console: live view, strokes/pins/laser drawn with pointer events,
// undo/clear, freeze-frame, notes, microphone, connection quality, the view selector
// (one eye full size, both eyes side by side, and whatever else the trainee offers),
// and the scenario strip (current step n/N and its prompt, the latest hint, event
// messages, the result); in English or Chinese (i18n.js) with a switch.
// Talks to the server over a WebSocket for signalling (the trainee offers), and to
// the trainee over the "mentor" data channel (schema: /schema.json, version 1).
// The video carries a frame-id strip above the picture (framecode.js): it is read on
// every frame and clipped out of sight by layout().
import { FrameCodeReader, STRIP_PX } from './framecode.js';
import { LANGS, applyStatic, keepLang, pickLang, t } from './i18n.js';

const V = 1;
const HB_INTERVAL_MS = 1000;
const DEAD_AFTER_MS = 3000;
const LASER_INTERVAL_MS = 33;
const MAX_POINTS = 1000;
const $ = (id) => document.getElementById(id);
const nowMs = () => performance.timeOrigin + performance.now();

const state = {
  status: 'starting', error: null, role: null, canAnnotate: false, peerId: null, sessionId: null, name: null,
  currentFrameId: null, framesSeen: 0, framesWithId: 0, frameLog: [], acks: [], marks: [], notes: [],
  stats: {}, dcRttMs: null, joins: 0, frozen: false, frozenId: null, micOn: false, lastRxMs: 0,
  scenario: null, lang: 'en', views: [], view: null, viewRect: null, viewCanAnnotate: true, stripPx: STRIP_PX,
  statusKey: 'st_starting', statusArgs: [],
};
const ui = { tool: 'pen', color: [0.1, 1, 0.2, 1] };
let ws = null, pc = null, dc = null, micTrack = null, hbSeq = 0, strokeSeq = 0, hbTimer = null, statsTimer = null;
let reconnectTimer = null, lastStats = null;
const pending = new Map(); // local strokes/pins awaiting the trainee's ack
const codeReader = new FrameCodeReader();
const video = $('video'), overlay = $('overlay'), freezeCanvas = $('freeze'), frame = $('frame');
const octx = overlay.getContext('2d');

// ---- token -------------------------------------------------------------------------
// The token rides in the link's fragment: never sent to the server in a request
// line or a Referer, and a reload keeps it.
function readToken() {
  return new URLSearchParams(location.hash.slice(1)).get('token');
}
const token = readToken();

// ---- language ------------------------------------------------------------------------
// English or Chinese (i18n.js: the link's `lang=`, else the switch's last choice, else
// the browser's language); the switch in the header changes every label at once.
let LANG = state.lang = pickLang();
const tr = (k, ...args) => t(LANG, k, ...args);
const pick = (en, zh) => (LANG === 'zh' && zh ? zh : en) || '';
let bannerMsg = null, toastMsg = null; // [key, ...args], re-rendered on a language switch

function setLang(lang) {
  if (!(lang in LANGS)) return;
  LANG = state.lang = lang;
  $('lang-select').value = lang;
  applyStatic(lang);
  renderStatus();
  applyRole();
  renderBanner();
  renderToast();
  renderViews();
  renderMarks();
  $('mic').textContent = tr(micTrack ? 'mic_on' : 'mic_off');
  if (state.scenario) renderScenario();
}

// ---- status / UI -----------------------------------------------------------------
// ``state.status`` stays in English (tests and tools read it); the page shows LANG's words.
function setStatus(key, ok, ...args) {
  Object.assign(state, { statusKey: key, statusArgs: args, statusOk: ok });
  state.status = t('en', key, ...args.map((a) => t('en', a)));
  renderStatus();
}
function renderStatus() {
  const el = $('status');
  el.textContent = tr(state.statusKey, ...state.statusArgs.map((a) => tr(a)));
  el.className = 'status ' + (state.statusOk === true ? 'ok' : state.statusOk === false ? 'bad' : '');
}
function banner(key, ...args) { bannerMsg = key ? [key, ...args] : null; renderBanner(); }
function renderBanner() {
  const b = $('banner');
  b.hidden = !bannerMsg;
  b.textContent = bannerMsg ? tr(bannerMsg[0], ...bannerMsg.slice(1).map((a) => (Array.isArray(a) ? tr(...a) : a))) : '';
}
function toast(key, ...args) { toastMsg = [key, ...args]; renderToast(); }
function renderToast() { $('toast').textContent = toastMsg ? tr(...toastMsg) : ''; }
function uid() { return `${Date.now().toString(36)}-${(strokeSeq++).toString(36)}`; }

function applyRole() {
  $('role').textContent = state.role ? tr(`role_${state.role}`) : '';
  $('session').textContent = state.sessionId ? tr('session', state.sessionId) : '';
  const can = canDraw();
  $('draw-tools').disabled = !state.canAnnotate;
  $('mic').disabled = !state.canAnnotate;
  overlay.classList.toggle('disabled', !can);
  if (!state.canAnnotate && state.role === 'observer') banner('observer_banner');
}
// Drawing needs an expert and a view that is part of the mirror (the one the trainee
// unprojects strokes on); a view such as a C-arm monitor cannot be drawn on.
function canDraw() { return state.canAnnotate && state.viewCanAnnotate !== false && state.viewRect !== null; }

function renderList(el, items, fmt) {
  el.replaceChildren(...items.map((it) => { const li = document.createElement('li'); li.textContent = fmt(it); return li; }));
}

// ---- signalling --------------------------------------------------------------------
function send(msg) {
  if (!dc || dc.readyState !== 'open') return false;
  dc.send(JSON.stringify({ v: V, ...msg }));
  return true;
}
function wsSend(msg) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ v: V, ...msg })); }

function connect() {
  if (!token) {
    setStatus('st_refused', false);
    state.error = 'no_token';
    banner('no_token');
    return;
  }
  setStatus('st_connecting');
  // relative to the console's own address, so a reverse proxy may serve it under a prefix
  const url = new URL('ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.hash = '';
  const sock = ws = new WebSocket(url);
  sock.onopen = () => sock.send(JSON.stringify({ v: V, type: 'join', token }));
  sock.onmessage = (ev) => { if (sock === ws) onServer(JSON.parse(ev.data)); };
  sock.onclose = (ev) => {
    if (sock !== ws) return;
    if (state.status === 'refused') return;
    if (ev.code === 4401 || ev.code === 4403 || ev.code === 4409) { setStatus('st_refused', false); return; }
    scheduleRejoin('why_server_lost');
  };
}

function onServer(msg) {
  switch (msg.type) {
    case 'welcome':
      Object.assign(state, { peerId: msg.peer_id, role: msg.role, name: msg.name, sessionId: msg.session_id,
                             canAnnotate: !!msg.can_annotate, iceServers: msg.ice_servers,
                             icePolicy: msg.ice_transport_policy, error: null });
      state.joins += 1;
      applyRole();
      setStatus(msg.peers.length ? 'st_negotiating' : 'st_waiting');
      break;
    case 'peer-joined': setStatus('st_negotiating'); break;
    case 'peer-left': if (pc) { closePeer(); setStatus('st_resident_left_waiting'); } break;
    case 'signal': onSignal(msg.from, msg.data); break;
    case 'error':
      state.error = msg.code;
      state.errorMessage = msg.message || '';
      if (['unauthorized', 'full', 'join_timeout', 'bad_request'].includes(msg.code)) {
        setStatus('st_refused', false);
        // the server's own words stay in English; the page says what they mean in LANG
        const why = /older vr-trainer/.test(msg.message || '') ? 'err_old_token' : `err_${msg.code}`;
        banner('refused', [why]);
        if (LANG !== 'en') $('banner').title = msg.message || '';
      } else toast('server_note', msg.message || msg.code);
      break;
  }
}

async function onSignal(from, data) {
  if (data.kind !== 'offer') return;
  closePeer();
  const conn = pc = new RTCPeerConnection({ iceServers: state.iceServers || [], iceTransportPolicy: state.icePolicy || 'all' });
  conn.ontrack = (ev) => {
    // ask for the smallest jitter buffer: a mentor wants the picture now, not smooth later
    try { ev.receiver.jitterBufferTarget = 0; } catch {}
    try { ev.receiver.playoutDelayHint = 0; } catch {}
    if (ev.track.kind === 'video') { video.srcObject = ev.streams[0] || new MediaStream([ev.track]); video.play().catch(() => {}); }
    else { $('remote-audio').srcObject = new MediaStream([ev.track]); $('remote-audio').play().catch(() => {}); }
  };
  conn.ondatachannel = (ev) => setupChannel(ev.channel);
  conn.onicecandidate = (ev) => {
    if (ev.candidate) wsSend({ type: 'signal', to: from, data: { kind: 'candidate', candidate: ev.candidate.candidate,
                                                                   sdpMid: ev.candidate.sdpMid, sdpMLineIndex: ev.candidate.sdpMLineIndex } });
    else wsSend({ type: 'signal', to: from, data: { kind: 'end-of-candidates' } });
  };
  conn.onconnectionstatechange = () => {
    if (conn !== pc) return;
    if (conn.connectionState === 'connected') setStatus('st_live', true);
    if (conn.connectionState === 'failed') scheduleRejoin('why_failed');
  };
  await conn.setRemoteDescription({ type: 'offer', sdp: data.sdp });
  for (const t of conn.getTransceivers()) {
    if (t.receiver.track && t.receiver.track.kind === 'audio') {
      t.direction = state.canAnnotate ? 'sendrecv' : 'recvonly';
      if (micTrack && state.canAnnotate) await t.sender.replaceTrack(micTrack);
    }
  }
  await conn.setLocalDescription(await conn.createAnswer());
  wsSend({ type: 'signal', to: from, data: { kind: 'answer', sdp: conn.localDescription.sdp } });
}

function setupChannel(channel) {
  dc = channel;
  channel.onopen = () => { state.lastRxMs = nowMs(); send({ type: 'sync' }); };
  channel.onmessage = (ev) => {
    if (channel !== dc) return;
    state.lastRxMs = nowMs();
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    onTrainee(m);
  };
}

function onTrainee(m) {
  switch (m.type) {
    case 'hello': onHello(m); break;
    case 'view': onView(m); break;
    case 'hb': send({ type: 'hb_ack', seq: m.seq, t_ms: m.t_ms }); break;
    case 'hb_ack': state.dcRttMs = Math.max(0, nowMs() - m.t_ms); break;
    case 'ack': onAck(m); break;
    case 'marks': state.marks = m.marks || []; renderMarks(); break;
    case 'notes': state.notes = m.notes || []; renderList($('notes'), state.notes, (n) => `${n.author}: ${n.text}`); break;
    case 'status': onStatus(m); break;
    case 'bye': scheduleRejoin('why_left'); break;
  }
}
function renderMarks() {
  renderList($('marks'), state.marks, (k) => `${tr('mark_by', tr(`kind_${k.kind}`), k.author)}${k.label ? ': ' + k.label : ''}`);
}

// ---- views -------------------------------------------------------------------------
// The trainee offers views in ``hello`` (one eye, both eyes; later the C-arm monitor and
// the endoscope) and says in ``view`` which one the video shows from now on and where its
// picture lies in the mirror (``rect``): points drawn on the picture are sent in mirror
// coordinates. The choice is kept in this browser; `view=` in the link's fragment wins.
const VIEW_KEY = 'vr-trainer.console.view';
function wantedView() {
  const asked = new URLSearchParams(location.hash.slice(1)).get('view');
  if (asked) return asked;
  try { return localStorage.getItem(VIEW_KEY); } catch { return null; }
}
function onHello(m) {
  state.canAnnotate = !!m.can_annotate;
  state.views = Array.isArray(m.views) ? m.views : [];
  if (m.frame_code && Number.isInteger(m.frame_code.strip_px)) state.stripPx = m.frame_code.strip_px;
  if (m.view && !state.view) state.view = m.view;
  renderViews();
  applyRole();
  setStatus('st_live', true);
  const want = wantedView();
  if (want && want !== m.view && state.views.some((v) => v.id === want)) chooseView(want, false);
}
function onView(m) {
  const changed = m.view !== state.view || JSON.stringify(m.rect) !== JSON.stringify(state.viewRect);
  Object.assign(state, { view: m.view, viewRect: m.rect ?? null, viewCanAnnotate: !!m.can_annotate });
  if (Number.isInteger(m.strip_px)) state.stripPx = m.strip_px;
  if (changed) {
    if (state.frozen) setFrozen(false);
    pending.clear();
  }
  renderViews();
  applyRole();
  layout();
}
function renderViews() {
  const sel = $('view-select');
  $('view-choice').hidden = state.views.length < 2;
  sel.replaceChildren(...state.views.map((v) => {
    const o = document.createElement('option');
    o.value = v.id;
    o.textContent = pick(v.label_en, v.label_zh) || v.id;
    return o;
  }));
  if (state.view) sel.value = state.view;
}
function chooseView(id, keep = true) {
  if (keep) { try { localStorage.setItem(VIEW_KEY, id); } catch {} }
  send({ type: 'view', view: id });
}
// picture coordinates (0..1 over what the expert sees) -> mirror coordinates
function toMirror(p) {
  const r = state.viewRect || [0, 0, 1, 1];
  return [r[0] + p[0] * r[2], r[1] + p[1] * r[3]];
}

// ---- scenario strip ----------------------------------------------------------------
// ``status`` carries the whole state (step, prompt, hint, result) plus the notices since
// the last one; on (re)join it carries the latest few with ``replay`` set.
const EVENTS_SHOWN = 6;
function onStatus(m) {
  const sc = state.scenario || (state.scenario = { events: [] });
  Object.assign(sc, { stepIndex: m.step_index ?? null, stepCount: m.step_count || 0, stepId: m.step_id ?? null,
                      prompt: pick(m.prompt_en, m.prompt_zh), hint: pick(m.hint_en, m.hint_zh),
                      result: m.result || null, dropped: m.dropped || 0 });
  const lines = (Array.isArray(m.notices) ? m.notices : []).map(eventLine).filter(Boolean);
  sc.events = (m.replay ? lines : sc.events.concat(lines)).slice(-EVENTS_SHOWN);
  renderScenario();
}
function eventLine(n) {
  const text = pick(n.text_en, n.text_zh);
  const num = Number.isInteger(n.step_index) ? n.step_index + 1 : '';
  switch (n.kind) {
    case 'critical_error': return { kind: 'critical', text: `${tr('critical')}: ${text || n.critical_error || ''}` };
    case 'prompt': return text ? { kind: 'event', text } : null;
    case 'step_completed': return { kind: 'done', text: `${tr('step')} ${num} ${tr('completed')}` };
    case 'step_failed': return { kind: 'failed', text: `${tr('step')} ${num} ${tr('failed')}` };
    default: return null; // hints have their own line; step_started, run_finished fill the header
  }
}
function renderScenario() {
  const sc = state.scenario;
  const box = $('scenario');
  box.hidden = false;
  box.lang = LANG === 'zh' ? 'zh-CN' : 'en';
  let count = '';
  if (sc.stepCount) {
    if (sc.stepIndex === null) count = `${tr('step')} –/${sc.stepCount}`;
    else if (sc.stepIndex < sc.stepCount) count = `${tr('step')} ${sc.stepIndex + 1}/${sc.stepCount}`;
    else count = tr('finished');
  }
  $('step-count').textContent = count;
  $('step-count').hidden = !count;
  $('step-prompt').textContent = sc.prompt;
  $('step-hint').hidden = !sc.hint;
  $('hint-label').textContent = `${tr('hint')}:`;
  $('hint-text').textContent = sc.hint;
  $('scenario-events').replaceChildren(...sc.events.map((e) => {
    const li = document.createElement('li');
    li.className = e.kind;
    li.textContent = e.text;
    return li;
  }));
  const res = $('run-result');
  res.hidden = !sc.result;
  if (sc.result) {
    const r = sc.result;
    const mark = typeof r.pass_mark === 'number' ? ` (${tr('passMark')} ${r.pass_mark.toFixed(0)})` : '';
    res.textContent = `${tr('score')} ${Number(r.score).toFixed(1)} / 100 · ${r.passed ? tr('passed') : tr('notPassed')}${mark}`;
    res.className = `line ${r.passed ? 'pass' : 'fail'}`;
  }
}

function onAck(m) {
  state.acks.push({ ...m, at_ms: nowMs() });
  if (state.acks.length > 200) state.acks.splice(0, 100);
  const p = pending.get(m.ref);
  if (p) {
    p.acked = m.ok ? 'ok' : 'refused';
    p.ackAt = nowMs();
    drawOverlay();
    setTimeout(() => { pending.delete(m.ref); drawOverlay(); }, m.ok ? 400 : 1500);
  }
  if (!m.ok) toast(m.ref === 'view' ? 'view_refused' : 'not_placed', m.reason);
}

function closePeer() {
  if (dc) { try { dc.close(); } catch {} }
  if (pc) { try { pc.close(); } catch {} }
  dc = null; pc = null;
}

function scheduleRejoin(why) {
  if (reconnectTimer || state.status === 'refused') return;
  setStatus('st_rejoining', false, why);
  closePeer();
  const old = ws; ws = null;
  if (old) { try { old.close(); } catch {} }
  reconnectTimer = setTimeout(() => { reconnectTimer = null; connect(); }, 500);
}

function heartbeat() {
  if (!dc || dc.readyState !== 'open') return;
  send({ type: 'hb', seq: ++hbSeq, t_ms: nowMs() });
  if (nowMs() - state.lastRxMs > DEAD_AFTER_MS) scheduleRejoin('why_silent');
}

// ---- connection quality ------------------------------------------------------------
async function pollStats() {
  if (!pc) return;
  const report = await pc.getStats();
  const s = {};
  report.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') {
      Object.assign(s, { fps: r.framesPerSecond, framesDecoded: r.framesDecoded, lost: r.packetsLost,
                         bytes: r.bytesReceived, jitterMs: (r.jitter || 0) * 1000, w: r.frameWidth, h: r.frameHeight });
    }
    if (r.type === 'candidate-pair' && r.state === 'succeeded' && r.nominated && r.currentRoundTripTime !== undefined) {
      s.rttMs = r.currentRoundTripTime * 1000;
    }
  });
  const t = nowMs();
  if (lastStats && s.bytes !== undefined) {
    const dt = (t - lastStats.t) / 1000;
    s.kbps = ((s.bytes - lastStats.bytes) * 8) / 1000 / dt;
    if (s.fps === undefined) s.fps = (s.framesDecoded - lastStats.framesDecoded) / dt;
  }
  lastStats = { ...s, t };
  s.dcRttMs = state.dcRttMs;
  state.stats = s;
  const f = (x, d = 0) => (x === undefined || x === null ? '–' : Number(x).toFixed(d));
  const strip = s.h && s.h > state.stripPx ? state.stripPx : 0;
  $('quality').textContent = tr('quality', f(s.rttMs), f(s.dcRttMs), f(s.fps), f(s.kbps), f(s.lost), s.w || '–',
                                s.h ? s.h - strip : '–');
}

// ---- video frames and their ids ------------------------------------------------------
function onVideoFrame(now, meta) {
  const id = codeReader.read(video, state.stripPx);
  state.framesSeen += 1;
  if (id !== null) {
    state.currentFrameId = id;
    state.framesWithId += 1;
    const rx = meta && meta.receiveTime !== undefined ? performance.timeOrigin + meta.receiveTime : null;
    state.frameLog.push([id, performance.timeOrigin + now, rx]);
    if (state.frameLog.length > 1200) state.frameLog.splice(0, 600);
  }
  video.requestVideoFrameCallback(onVideoFrame);
}
video.requestVideoFrameCallback(onVideoFrame);
video.addEventListener('resize', layout);
window.addEventListener('resize', layout);
if (window.ResizeObserver) new ResizeObserver(() => layout()).observe($('stage')); // e.g. the scenario strip appears
video.addEventListener('loadedmetadata', () => { $('hint').hidden = true; layout(); });

// The picture fills #frame; the strip above it (stripRows) is pushed out of #frame's top
// edge, which clips it: the expert never sees the code.
function stripRows() { return video.videoHeight > state.stripPx ? state.stripPx : 0; }
function layout() {
  const stage = $('stage').getBoundingClientRect();
  const strip = stripRows();
  const vw = video.videoWidth || 16, full = video.videoHeight || 9, vh = Math.max(1, full - strip);
  const s = Math.min(stage.width / vw, (stage.height - 4) / vh);
  frame.style.width = `${Math.floor(vw * s)}px`;
  frame.style.height = `${Math.floor(vh * s)}px`;
  video.style.width = `${vw * s}px`;
  video.style.height = `${full * s}px`;
  video.style.top = `${-strip * s}px`;
  const dpr = window.devicePixelRatio || 1;
  overlay.width = Math.floor(vw * s * dpr);
  overlay.height = Math.floor(vh * s * dpr);
  drawOverlay();
}

// ---- drawing -----------------------------------------------------------------------
let drawing = null;
let laserPos = null, laserSentAt = 0;

function uv(ev) {
  const r = overlay.getBoundingClientRect();
  return [Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height))];
}
function frameForDrawing() { return state.frozen ? state.frozenId : state.currentFrameId; }

overlay.addEventListener('pointerdown', (ev) => {
  if (!state.canAnnotate || ev.button !== 0) return;
  if (!canDraw()) { toast('view_no_draw'); return; }
  const fid = frameForDrawing();
  if (fid === null) { toast('no_picture'); return; }
  try { overlay.setPointerCapture(ev.pointerId); } catch {}
  ev.preventDefault();
  const p = uv(ev);
  if (ui.tool === 'pen') {
    if (!state.frozen) send({ type: 'hold', frame_id: fid });
    drawing = { id: uid(), frameId: fid, points: [p], color: ui.color };
  } else if (ui.tool === 'pin') {
    const id = uid();
    const label = $('note').value.trim().slice(0, 200);
    pending.set(id, { kind: 'pin', points: [p], color: ui.color });
    send({ type: 'pin', id, frame_id: fid, point: toMirror(p), color: ui.color, label, t_ms: nowMs() });
    drawOverlay();
  } else if (ui.tool === 'laser') {
    laserPos = p;
    sendLaser(true);
  }
});
overlay.addEventListener('pointermove', (ev) => {
  if (drawing) {
    const evs = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
    for (const e of evs.length ? evs : [ev]) addPoint(drawing.points, uv(e));
    drawOverlay();
  } else if (ui.tool === 'laser' && laserPos) {
    laserPos = uv(ev);
    sendLaser(false);
    drawOverlay();
  }
});
function endPointer(ev) {
  if (drawing) {
    addPoint(drawing.points, uv(ev));
    const d = drawing;
    drawing = null;
    if (d.points.length < 2) d.points.push([d.points[0][0] + 0.001, d.points[0][1]]);
    const pts = decimate(d.points, MAX_POINTS);
    pending.set(d.id, { kind: 'stroke', points: pts, color: d.color, frozen: state.frozen });
    send({ type: 'stroke', id: d.id, frame_id: d.frameId, points: pts.map(toMirror), color: d.color, width_px: 4,
           t_ms: nowMs() });
    if (!state.frozen) send({ type: 'release', frame_id: d.frameId });
    drawOverlay();
  }
  if (laserPos) {
    laserPos = null;
    send({ type: 'laser', frame_id: frameForDrawing() ?? 0, point: null });
    drawOverlay();
  }
}
overlay.addEventListener('pointerup', endPointer);
overlay.addEventListener('pointercancel', endPointer);

function addPoint(points, p) {
  const q = points[points.length - 1];
  if (!q || Math.hypot(p[0] - q[0], p[1] - q[1]) > 0.002) points.push(p);
}
function decimate(points, max) {
  if (points.length <= max) return points;
  const out = [];
  const step = (points.length - 1) / (max - 1);
  for (let i = 0; i < max; i++) out.push(points[Math.round(i * step)]);
  return out;
}
function sendLaser(force) {
  const t = nowMs();
  if (!force && t - laserSentAt < LASER_INTERVAL_MS) return;
  laserSentAt = t;
  const fid = frameForDrawing();
  if (fid !== null && laserPos) send({ type: 'laser', frame_id: fid, point: toMirror(laserPos) });
}

function drawOverlay() {
  const w = overlay.width, h = overlay.height;
  octx.clearRect(0, 0, w, h);
  const css = (c, a = 1) => `rgba(${Math.round(c[0] * 255)},${Math.round(c[1] * 255)},${Math.round(c[2] * 255)},${a})`;
  const strokes = [...pending.values()];
  if (drawing) strokes.push({ kind: 'stroke', points: drawing.points, color: drawing.color });
  octx.lineWidth = 3 * (window.devicePixelRatio || 1);
  octx.lineCap = 'round';
  octx.lineJoin = 'round';
  for (const s of strokes) {
    const alpha = s.acked === 'ok' && !s.frozen ? 0.35 : 0.9;
    octx.strokeStyle = s.acked === 'refused' ? 'rgba(255,80,60,0.9)' : css(s.color, alpha);
    octx.fillStyle = octx.strokeStyle;
    if (s.kind === 'pin') {
      octx.beginPath();
      octx.arc(s.points[0][0] * w, s.points[0][1] * h, 6, 0, Math.PI * 2);
      octx.fill();
      continue;
    }
    octx.beginPath();
    s.points.forEach((p, i) => (i ? octx.lineTo(p[0] * w, p[1] * h) : octx.moveTo(p[0] * w, p[1] * h)));
    octx.stroke();
  }
  if (laserPos) {
    octx.fillStyle = 'rgba(255,40,30,0.9)';
    octx.beginPath();
    octx.arc(laserPos[0] * w, laserPos[1] * h, 7, 0, Math.PI * 2);
    octx.fill();
  }
}

// ---- freeze ------------------------------------------------------------------------
function setFrozen(on) {
  if (on === state.frozen) return;
  if (on) {
    const fid = state.currentFrameId;
    if (fid === null || !video.videoWidth) { toast('no_freeze'); return; }
    const strip = stripRows(), vw = video.videoWidth, vh = video.videoHeight - strip;
    freezeCanvas.width = vw;
    freezeCanvas.height = vh;
    freezeCanvas.getContext('2d').drawImage(video, 0, strip, vw, vh, 0, 0, vw, vh); // the picture, not the strip
    state.frozen = true;
    state.frozenId = fid;
    send({ type: 'hold', frame_id: fid });
  } else {
    send({ type: 'release', frame_id: state.frozenId });
    state.frozen = false;
    state.frozenId = null;
    for (const [k, p] of pending) if (p.frozen) pending.delete(k);
  }
  freezeCanvas.hidden = !state.frozen;
  $('freeze-btn').classList.toggle('active', state.frozen);
  drawOverlay();
}

// ---- microphone --------------------------------------------------------------------
async function setMic(on) {
  if (on && !micTrack) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
      micTrack = stream.getAudioTracks()[0];
    } catch (e) { toast('mic_unavailable', e.message); return; }
  } else if (!on && micTrack) { micTrack.stop(); micTrack = null; }
  state.micOn = !!micTrack;
  if (pc) for (const t of pc.getTransceivers()) {
    if (t.receiver.track && t.receiver.track.kind === 'audio' && t.direction === 'sendrecv') await t.sender.replaceTrack(micTrack);
  }
  $('mic').textContent = tr(micTrack ? 'mic_on' : 'mic_off');
  $('mic').classList.toggle('active', !!micTrack);
}

// ---- controls ----------------------------------------------------------------------
document.querySelectorAll('[data-tool]').forEach((b) => b.addEventListener('click', () => setTool(b.dataset.tool)));
function setTool(t) {
  ui.tool = t;
  document.querySelectorAll('[data-tool]').forEach((x) => x.classList.toggle('active', x.dataset.tool === t));
  overlay.classList.toggle('laser', t === 'laser');
}
document.querySelectorAll('[data-color]').forEach((b) => b.addEventListener('click', () => {
  ui.color = b.dataset.color.split(',').map(Number);
  document.querySelectorAll('[data-color]').forEach((x) => x.classList.toggle('active', x === b));
}));
$('undo').addEventListener('click', () => send({ type: 'undo' }));
$('clear').addEventListener('click', () => { if (confirm(tr('confirm_clear'))) send({ type: 'clear' }); });
$('view-select').addEventListener('change', (ev) => chooseView(ev.target.value));
$('lang-select').addEventListener('change', (ev) => { keepLang(ev.target.value); setLang(ev.target.value); });
$('freeze-btn').addEventListener('click', () => setFrozen(!state.frozen));
$('mic').addEventListener('click', () => setMic(!micTrack));
$('listen').addEventListener('click', () => { const a = $('remote-audio'); a.muted = false; a.play().catch(() => {}); });
$('send-note').addEventListener('click', () => {
  const text = $('note').value.trim();
  if (text && send({ type: 'note', id: uid(), text: text.slice(0, 1000) })) $('note').value = '';
});
window.addEventListener('keydown', (ev) => {
  if (ev.target instanceof HTMLTextAreaElement || !state.canAnnotate) return;
  if ((ev.ctrlKey || ev.metaKey) && ev.key === 'z') { send({ type: 'undo' }); ev.preventDefault(); }
  else if (ev.key === 'f') setFrozen(!state.frozen);
  else if (ev.key === 'p') setTool('pen');
  else if (ev.key === 'i') setTool('pin');
  else if (ev.key === 'l') setTool('laser');
});

// For tests and the benchmark: read-only state plus the raw channel.
window.vrConsole = {
  state, send, setFrozen, setMic, setTool, setLang, chooseView, toMirror,
  rawSend: (text) => { if (dc && dc.readyState === 'open') { dc.send(text); return true; } return false; },
};

setLang(LANG);
hbTimer = setInterval(heartbeat, HB_INTERVAL_MS);
statsTimer = setInterval(() => { pollStats().catch(() => {}); }, 1000);
connect();
