"""The report's words in English and Chinese (metric ids keep their id where no label is known)."""

from __future__ import annotations

import re

LABELS: dict[str, tuple[str, str]] = {
    "report_title": ("vr-trainer assessment report", "vr-trainer 考核报告"),
    "resident": ("Resident", "住院医师"), "date": ("Date", "日期"), "duration": ("Duration", "时长"),
    "backend": ("Backend", "显示后端"), "recording": ("Recording", "记录文件"),
    "score": ("Score", "得分"), "pass_mark": ("pass mark", "及格线"), "passed": ("PASSED", "通过"),
    "failed": ("FAILED", "未通过"), "unfinished": ("NOT FINISHED", "未完成"),
    "fail_reasons": ("Why it did not pass", "未通过原因"),
    "rubric": ("Score against the rubric", "评分细则"), "metric": ("Metric", "指标"), "value": ("Value", "数值"),
    "weight": ("Weight", "权重"), "metric_score": ("Score (0..1)", "得分 (0..1)"),
    "full_zero": ("Full / zero marks at", "满分值 / 零分值"), "definition": ("Definition and source", "定义与来源"),
    "steps": ("Steps and timeline", "步骤与时间线"), "step": ("Step", "步骤"), "start_s": ("Start (s)", "开始 (秒)"),
    "time_s": ("Time (s)", "用时 (秒)"), "clock_s": ("Time into the run (s)", "时间 (秒)"),
    "allowance_s": ("Allowance (s)", "限时 (秒)"),
    "overtime_s": ("Overtime (s)", "超时 (秒)"), "state": ("Result", "结果"), "completed": ("completed", "完成"),
    "not_completed": ("not completed", "未完成"), "events": ("events", "事件"),
    "critical_errors": ("Critical errors", "严重错误"),
    "distances": ("Distance to each risk structure", "与各危险结构的距离"),
    "distance_mm": ("signed distance (mm)", "带符号距离 (毫米)"), "contact": ("contact", "接触"),
    "no_distances": ("this recording holds no per-structure distances", "该记录不含各结构距离"),
    "fluoro": ("Fluoroscopy shots", "透视次数"), "shots": ("shots", "次数"),
    "no_shots": ("no fluoroscopy shots", "未进行透视"),
    "trajectory": ("Instrument tip trajectory over the anatomy", "器械尖端轨迹（叠加解剖轮廓）"),
    "ap": ("AP (front view)", "正位 (AP)"), "lateral": ("Lateral", "侧位"),
    "right_left_mm": ("left ← x (mm) → right", "左 ← x (毫米) → 右"),
    "post_ant_mm": ("posterior ← y (mm) → anterior", "后 ← y (毫米) → 前"),
    "inf_sup_mm": ("inferior ← z (mm) → superior", "下 ← z (毫米) → 上"),
    "angles": ("Instrument angles against the targets", "器械角度与目标范围"),
    "angle_deg": ("angle (deg)", "角度 (度)"),
    "target_range": ("target", "目标"), "no_angles": ("this recording holds no angles", "该记录不含角度"),
    "notes": ("Mentor notes", "导师批注"), "no_notes": ("no mentor notes in this session", "本次训练无导师批注"),
    "key_images": ("Key images", "关键图像"), "no_images": ("this recording holds no C-arm or endoscope images",
                                                           "该记录不含透视或内镜图像"),
    "carm_shot": ("C-arm shot", "透视"), "oblique": ("oblique", "斜位"), "endoscope": ("Endoscope", "内镜"),
    "removed": ("removed", "已摘除"), "more_images": ("more images are in the recording", "张图像见记录文件"),
    "progress": ("Progress over attempts", "历次练习进展"), "attempt": ("Attempt", "次序"),
}

METRIC_LABELS: dict[str, tuple[str, str]] = {
    "steps_completed_pct": ("Steps completed", "完成步骤比例"), "total_time_s": ("Total time", "总用时"),
    "risk_contacts": ("Risk-structure contacts", "危险结构接触次数"),
    "min_risk_distance_mm": ("Closest approach to a risk structure", "与危险结构最近距离"),
    "target_error_mm": ("Target error", "目标偏差"), "path_length_mm": ("Path length", "路径长度"),
    "step_overtime_s": ("Step overtime", "步骤超时"), "risk_near_time_s": ("Time near risk", "危险区停留时间"),
    "critical_error_count": ("Critical errors", "严重错误数"), "hints_shown": ("Hints shown", "提示次数"),
    "fluoro_shots": ("Fluoroscopy shots", "透视次数"), "fluoro_time_s": ("Fluoroscopy time", "透视时间"),
    "fluoro_dose_mgy": ("Fluoroscopy dose", "透视剂量"),
    "instrument_exchanges": ("Instrument exchanges", "器械更换次数"),
    "wrong_instrument_uses": ("Wrong instrument uses", "器械误用次数"),
}


def label(key: str, locale: str) -> str:
    """The word for ``key`` in ``locale`` (en or zh)."""
    en, zh = LABELS.get(key, (key, key))
    return zh if locale == "zh" else en


def metric_label(name: str, locale: str) -> str:
    """A metric's readable name (its id when none is known)."""
    en, zh = METRIC_LABELS.get(name, (name.replace("_", " "), name))
    return zh if locale == "zh" else en


_REASONS_ZH = ((r"^score ([\d.]+) is below the pass mark ([\d.]+)$", r"得分 \1 低于及格线 \2"),
               (r"^step (\S+) failed$", r"步骤 \1 失败"), (r"^step (\S+) not completed$", r"步骤 \1 未完成"),
               (r"^critical error (\S+) at ([\d.]+) s: (.*)$", r"严重错误 \1（\2 秒）：\3"))


def fail_reason(text: str, locale: str) -> str:
    """A recorded fail reason (English, from the scoring) in ``locale``."""
    if locale != "zh":
        return text
    for pattern, zh in _REASONS_ZH:
        if re.match(pattern, text):
            return re.sub(pattern, zh, text)
    return text
