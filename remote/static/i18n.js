// The console's words in English and Chinese (the first users are a hospital in China).
// The language: `lang=zh|en` in the link's fragment, else the switch's last choice (kept
// in this browser), else the browser's language (zh* -> Chinese, anything else English).
// Elements carry data-i18n (text), data-i18n-title and data-i18n-placeholder keys.
export const LANGS = { en: 'English', zh: '中文' };
const STORE_KEY = 'vr-trainer.console.lang';

export const WORDS = {
  en: {
    brand: 'vr-trainer mentor', session: 'session {0}', quality_title: 'round trip (network / data channel), frames a second, bit rate, packets lost, picture size',
    waiting_video: 'Waiting for the resident\'s view…', language: 'Language', view: 'View',
    annotate: 'Annotate', tool_group: 'tool', pen: '✎ Pen', pen_title: 'Freehand stroke (P)', pin: '📍 Pin', pin_title: 'Pin (I)',
    laser: '◉ Laser', laser_title: 'Laser pointer (L)', colour: 'colour', green: 'green', yellow: 'yellow', blue: 'blue', magenta: 'magenta',
    undo: '↶ Undo', undo_title: 'Undo my last mark (Ctrl+Z)', clear: '✕ Clear', clear_title: 'Remove every mark',
    freeze: '❄ Freeze', freeze_title: 'Freeze the picture and draw on it (F)', note_label: 'Note (or pin label)',
    note_placeholder: 'Type a note for the resident', send_note: 'Send note', voice: 'Voice', mic_off: '🎤 Microphone off',
    mic_on: '🎤 Microphone on', mic_title: 'Talk to the resident', listen: '🔈 Listen', listen_title: 'Play the resident\'s audio',
    marks: 'Marks in the headset', notes: 'Notes', kind_stroke: 'stroke', kind_pin: 'pin', mark_by: '{0} by {1}',
    role_trainee: 'resident', role_expert: 'expert', role_observer: 'observer',
    // status line
    st_starting: 'starting', st_connecting: 'connecting…', st_waiting: 'waiting for the resident…', st_negotiating: 'negotiating…',
    st_live: 'live', st_refused: 'refused', st_resident_left_waiting: 'resident left; waiting…', st_rejoining: '{0}; rejoining…',
    why_server_lost: 'server connection lost', why_failed: 'connection failed', why_left: 'resident left', why_silent: 'resident silent',
    // errors, banners, toasts
    no_token: 'No token in this link. Open the expert link printed by `vr-trainer mentor token`.',
    observer_banner: 'Observer: you can watch and listen; only experts annotate.',
    refused: 'Refused by the server: {0}', err_unauthorized: 'the token is not valid here (wrong, altered, expired or from an older version)',
    err_full: 'the session is full', err_join_timeout: 'no join in time', err_bad_request: 'the request was malformed',
    err_old_token: 'this token was made by an older vr-trainer; ask for a new one',
    no_picture: 'No picture yet', no_freeze: 'No picture to freeze yet', not_placed: 'Not placed: {0}',
    mic_unavailable: 'Microphone unavailable: {0}', view_no_draw: 'This view cannot be drawn on; choose an eye view',
    view_refused: 'View not available: {0}', server_note: 'Server: {0}', confirm_clear: 'Remove every mark from the headset?',
    quality: 'RTT {0} ms (channel {1} ms) · {2} fps · {3} kbit/s · lost {4} · {5}×{6}',
    // scenario strip
    step: 'Step', hint: 'Hint', finished: 'All steps ended', completed: 'completed', failed: 'failed',
    critical: 'Critical error', score: 'Score', passed: 'passed', notPassed: 'not passed', passMark: 'pass mark',
  },
  zh: {
    brand: 'vr-trainer 远程指导', session: '会话 {0}', quality_title: '往返时延（网络 / 数据通道）、帧率、码率、丢包数、画面尺寸',
    waiting_video: '等待学员的画面…', language: '语言', view: '画面',
    annotate: '标注', tool_group: '工具', pen: '✎ 画笔', pen_title: '自由画线 (P)', pin: '📍 图钉', pin_title: '图钉 (I)',
    laser: '◉ 激光笔', laser_title: '激光指示 (L)', colour: '颜色', green: '绿色', yellow: '黄色', blue: '蓝色', magenta: '品红',
    undo: '↶ 撤销', undo_title: '撤销我的上一个标记 (Ctrl+Z)', clear: '✕ 清除', clear_title: '清除所有标记',
    freeze: '❄ 冻结', freeze_title: '冻结画面并在上面标注 (F)', note_label: '备注（或图钉标签）',
    note_placeholder: '给学员输入一条备注', send_note: '发送备注', voice: '语音', mic_off: '🎤 麦克风已关',
    mic_on: '🎤 麦克风已开', mic_title: '与学员通话', listen: '🔈 收听', listen_title: '播放学员端的声音',
    marks: '头显中的标记', notes: '备注', kind_stroke: '笔画', kind_pin: '图钉', mark_by: '{1} 的{0}',
    role_trainee: '学员', role_expert: '专家', role_observer: '观摩者',
    st_starting: '正在启动', st_connecting: '正在连接…', st_waiting: '等待学员…', st_negotiating: '正在建立连接…',
    st_live: '直播中', st_refused: '已拒绝', st_resident_left_waiting: '学员已离开，等待中…', st_rejoining: '{0}，正在重新加入…',
    why_server_lost: '与服务器的连接中断', why_failed: '连接失败', why_left: '学员已离开', why_silent: '学员无响应',
    no_token: '此链接中没有令牌。请打开 `vr-trainer mentor token` 生成的专家链接。',
    observer_banner: '观摩者：可以观看和收听；只有专家可以标注。',
    refused: '服务器拒绝：{0}', err_unauthorized: '令牌在此无效（错误、被篡改、已过期或来自旧版本）',
    err_full: '会话人数已满', err_join_timeout: '加入超时', err_bad_request: '请求格式错误',
    err_old_token: '此令牌由旧版 vr-trainer 生成；请索取新的令牌',
    no_picture: '还没有画面', no_freeze: '还没有可冻结的画面', not_placed: '未能放置：{0}',
    mic_unavailable: '麦克风不可用：{0}', view_no_draw: '此画面不能标注；请选择眼睛画面',
    view_refused: '画面不可用：{0}', server_note: '服务器：{0}', confirm_clear: '清除头显中的所有标记？',
    quality: '往返 {0} ms（数据通道 {1} ms）· {2} 帧/秒 · {3} kbit/s · 丢包 {4} · {5}×{6}',
    step: '步骤', hint: '提示', finished: '所有步骤已结束', completed: '已完成', failed: '失败',
    critical: '严重错误', score: '得分', passed: '通过', notPassed: '未通过', passMark: '及格线',
  },
};

function normalise(tag) {
  return String(tag || '').toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

export function pickLang() {
  const asked = new URLSearchParams(location.hash.slice(1)).get('lang');
  if (asked) return normalise(asked);
  try {
    const kept = localStorage.getItem(STORE_KEY);
    if (kept && kept in LANGS) return kept;
  } catch {}
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  return normalise(langs[0]);
}

export function keepLang(lang) {
  try { localStorage.setItem(STORE_KEY, lang); } catch {}
}

// ``t(lang, key, ...args)``: the words, {0} {1} filled in; a missing key falls back to English.
export function t(lang, key, ...args) {
  const text = (WORDS[lang] && WORDS[lang][key]) ?? WORDS.en[key] ?? key;
  return text.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ''));
}

export function applyStatic(lang, root = document) {
  root.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  root.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(lang, el.dataset.i18n); });
  root.querySelectorAll('[data-i18n-title]').forEach((el) => { el.title = t(lang, el.dataset.i18nTitle); });
  root.querySelectorAll('[data-i18n-aria]').forEach((el) => { el.setAttribute('aria-label', t(lang, el.dataset.i18nAria)); });
  root.querySelectorAll('[data-i18n-placeholder]').forEach((el) => { el.placeholder = t(lang, el.dataset.i18nPlaceholder); });
}
