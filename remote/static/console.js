// The expert console: live view, strokes/pins/laser drawn with pointer events,
// undo/clear, freeze-frame, notes, microphone, connection quality, and the scenario
// strip (current step n/N and its prompt, the latest hint, event messages, the result).
// Talks to the server over a WebSocket for signalling (the trainee offers), and to
// the trainee over the "mentor" data channel (schema: /schema.json, version 1).
import { FrameCodeReader, STAMP_WIDTH_PX, CELL_PX } from './framecode.js';

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
  scenario: null, lang: 'en',
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
// The scenario strip follows the browser's language (zh* -> Chinese, else English);
// `lang=zh` or `lang=en` in the link's fragment overrides it.
function pickLang() {
  const asked = new URLSearchParams(location.hash.slice(1)).get('lang');
  const langs = asked ? [asked] : (navigator.languages && navigator.languages.length ? navigator.languages
                                                                                     : [navigator.language || 'en']);
  return String(langs[0] || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
}
const LANG = state.lang = pickLang();
const WORDS = {
  en: { step: 'Step', hint: 'Hint', finished: 'All steps ended', completed: 'completed', failed: 'failed',
        critical: 'Critical error', score: 'Score', passed: 'passed', notPassed: 'not passed', passMark: 'pass mark' },
  zh: { step: '步骤', hint: '提示', finished: '所有步骤已结束', completed: '已完成', failed: '失败',
        critical: '严重错误', score: '得分', passed: '通过', notPassed: '未通过', passMark: '及格线' },
};
const tr = (k) => WORDS[LANG][k];
const pick = (en, zh) => (LANG === 'zh' && zh ? zh : en) || '';

// ---- status / UI -----------------------------------------------------------------
function setStatus(s, ok) {
  state.status = s;
  const el = $('status');
  el.textContent = s;
  el.className = 'status ' + (ok === true ? 'ok' : ok === false ? 'bad' : '');
}
function banner(text) {
  const b = $('banner');
  b.hidden = !text;
  b.textContent = text || '';
}
function toast(text) { $('toast').textContent = text; }
function uid() { return `${Date.now().toString(36)}-${(strokeSeq++).toString(36)}`; }

function applyRole() {
  $('role').textContent = state.role || '';
  $('session').textContent = state.sessionId ? `session ${state.sessionId}` : '';
  const can = state.canAnnotate;
  $('draw-tools').disabled = !can;
  $('mic').disabled = !can;
  overlay.classList.toggle('disabled', !can);
  if (!can) banner(state.role === 'observer' ? 'Observer: you can watch and listen; only experts annotate.' : '');
}

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
    setStatus('refused', false);
    state.error = 'no_token';
    banner('No token in this link. Open the expert link printed by `vr-trainer mentor token`.');
    return;
  }
  setStatus('connecting…');
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
    if (ev.code === 4401 || ev.code === 4403 || ev.code === 4409) { setStatus('refused', false); return; }
    scheduleRejoin('server connection lost');
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
      setStatus(msg.peers.length ? 'negotiating…' : 'waiting for the resident…');
      break;
    case 'peer-joined': setStatus('negotiating…'); break;
    case 'peer-left': if (pc) { closePeer(); setStatus('resident left; waiting…'); } break;
    case 'signal': onSignal(msg.from, msg.data); break;
    case 'error':
      state.error = msg.code;
      if (['unauthorized', 'full', 'join_timeout', 'bad_request'].includes(msg.code)) {
        setStatus('refused', false);
        banner(`Refused by the server: ${msg.message}`);
      } else toast(msg.message || msg.code);
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
    if (conn.connectionState === 'connected') setStatus('live', true);
    if (conn.connectionState === 'failed') scheduleRejoin('connection failed');
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
    case 'hello': state.canAnnotate = !!m.can_annotate; applyRole(); setStatus('live', true); break;
    case 'hb': send({ type: 'hb_ack', seq: m.seq, t_ms: m.t_ms }); break;
    case 'hb_ack': state.dcRttMs = Math.max(0, nowMs() - m.t_ms); break;
    case 'ack': onAck(m); break;
    case 'marks': state.marks = m.marks || []; renderList($('marks'), state.marks, (k) => `${k.kind} by ${k.author}${k.label ? ': ' + k.label : ''}`); break;
    case 'notes': state.notes = m.notes || []; renderList($('notes'), state.notes, (n) => `${n.author}: ${n.text}`); break;
    case 'status': onStatus(m); break;
    case 'bye': scheduleRejoin('resident left'); break;
  }
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
  if (!m.ok) toast(`Not placed: ${m.reason}`);
}

function closePeer() {
  if (dc) { try { dc.close(); } catch {} }
  if (pc) { try { pc.close(); } catch {} }
  dc = null; pc = null;
}

function scheduleRejoin(why) {
  if (reconnectTimer || state.status === 'refused') return;
  setStatus(`${why}; rejoining…`, false);
  closePeer();
  const old = ws; ws = null;
  if (old) { try { old.close(); } catch {} }
  reconnectTimer = setTimeout(() => { reconnectTimer = null; connect(); }, 500);
}

function heartbeat() {
  if (!dc || dc.readyState !== 'open') return;
  send({ type: 'hb', seq: ++hbSeq, t_ms: nowMs() });
  if (nowMs() - state.lastRxMs > DEAD_AFTER_MS) scheduleRejoin('resident silent');
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
  $('quality').textContent = `RTT ${f(s.rttMs)} ms (channel ${f(s.dcRttMs)} ms) · ${f(s.fps)} fps · ${f(s.kbps)} kbit/s · lost ${f(s.lost)} · ${s.w || '–'}×${s.h || '–'}`;
}

// ---- video frames and their ids ------------------------------------------------------
function onVideoFrame(now, meta) {
  const id = codeReader.read(video);
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

function layout() {
  const stage = $('stage').getBoundingClientRect();
  const vw = video.videoWidth || 16, vh = video.videoHeight || 9;
  const s = Math.min(stage.width / vw, (stage.height - 4) / vh);
  frame.style.width = `${Math.floor(vw * s)}px`;
  frame.style.height = `${Math.floor(vh * s)}px`;
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
  const fid = frameForDrawing();
  if (fid === null) { toast('No picture yet'); return; }
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
    send({ type: 'pin', id, frame_id: fid, point: p, color: ui.color, label, t_ms: nowMs() });
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
    send({ type: 'stroke', id: d.id, frame_id: d.frameId, points: pts, color: d.color, width_px: 4, t_ms: nowMs() });
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
  if (fid !== null && laserPos) send({ type: 'laser', frame_id: fid, point: laserPos });
}

function drawOverlay() {
  const w = overlay.width, h = overlay.height;
  octx.clearRect(0, 0, w, h);
  // cover the frame-id code strip
  if (video.videoWidth) {
    octx.fillStyle = '#000';
    octx.fillRect(0, 0, Math.ceil((STAMP_WIDTH_PX / video.videoWidth) * w), Math.ceil((CELL_PX / video.videoHeight) * h));
  }
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
    if (fid === null || !video.videoWidth) { toast('No picture to freeze yet'); return; }
    freezeCanvas.width = video.videoWidth;
    freezeCanvas.height = video.videoHeight;
    freezeCanvas.getContext('2d').drawImage(video, 0, 0);
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
    } catch (e) { toast(`Microphone unavailable: ${e.message}`); return; }
  } else if (!on && micTrack) { micTrack.stop(); micTrack = null; }
  state.micOn = !!micTrack;
  if (pc) for (const t of pc.getTransceivers()) {
    if (t.receiver.track && t.receiver.track.kind === 'audio' && t.direction === 'sendrecv') await t.sender.replaceTrack(micTrack);
  }
  $('mic').textContent = micTrack ? '🎤 Microphone on' : '🎤 Microphone off';
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
$('clear').addEventListener('click', () => { if (confirm('Remove every mark from the headset?')) send({ type: 'clear' }); });
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
  state, send, setFrozen, setMic, setTool,
  rawSend: (text) => { if (dc && dc.readyState === 'open') { dc.send(text); return true; } return false; },
};

hbTimer = setInterval(heartbeat, HB_INTERVAL_MS);
statsTimer = setInterval(() => { pollStats().catch(() => {}); }, 1000);
connect();
