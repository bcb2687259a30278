"""``cohort.html``: the cohort's learning curves in one self-contained file (English or Chinese).

One chart per resident (matplotlib, Agg, embedded as PNG data URIs): score, total time,
fluoroscopy shots and risk-structure contacts against the attempt number, and the two CUSUM
charts of failure (:mod:`vr_trainer.session.cohort`), one line per scenario. No script, no
stylesheet or font from outside: the file opens offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vr_trainer.session.cohort import CusumSettings, Curve

TEXT = {
    "en": {"title": "Learning curves", "folder": "Recordings", "residents": "Residents", "attempts": "attempts",
           "resident": "Resident", "scenario": "Scenario", "n": "Attempts", "passed": "Passed",
           "last": "Last score", "first_pass": "Attempts to first pass", "acc": "CUSUM: acceptable at attempt",
           "unacc": "CUSUM: unacceptable at attempt", "unreadable": "Unreadable recordings (left out)",
           "incomplete": "not scored (cut short)", "score": "Score", "time": "Total time (s)",
           "shots": "Fluoroscopy shots", "contacts": "Risk-structure contacts (invasions)",
           "cusum": "CUSUM of failures, S = sum(x - p0)", "sprt": "CUSUM with decision limits",
           "attempt": "Attempt", "method": (
               "Attempts are numbered per resident and scenario by start time; an attempt fails when it is not "
               "passed. Learning-curve CUSUM S_n = sum(x_i - p0), x_i = 1 for a failure (Williams, Parry and "
               "Schlup, BMJ 1992): it rises while failures are more frequent than p0 and falls once the resident "
               "passes. Decision-limit CUSUM (Kestin, Br J Anaesth 1995; Bolsin and Colson, Int J Qual Health "
               "Care 2000) with Wald's SPRT limits (Ann Math Stat 1945): a failure adds 1 - s, a success "
               "subtracts s; crossing -h0 (from the last decision) signals an acceptable failure rate, crossing "
               "+h1 an unacceptable one.")},
    "zh": {"title": "学习曲线", "folder": "记录文件夹", "residents": "住院医师", "attempts": "次操作",
           "resident": "住院医师", "scenario": "场景", "n": "操作次数", "passed": "通过次数",
           "last": "最近得分", "first_pass": "首次通过所需次数", "acc": "CUSUM：判定合格于第几次",
           "unacc": "CUSUM：判定不合格于第几次", "unreadable": "无法读取的记录（未计入）",
           "incomplete": "未评分（记录中断）", "score": "得分", "time": "总时间（秒）",
           "shots": "透视次数", "contacts": "危险结构接触（侵犯）次数",
           "cusum": "失败累积和 S = Σ(x - p0)", "sprt": "带判定界限的 CUSUM",
           "attempt": "操作序号", "method": (
               "按开始时间对每位住院医师、每个场景的操作编号；未通过即为失败。学习曲线 CUSUM："
               "S_n = Σ(x_i - p0)，失败时 x_i = 1（Williams、Parry、Schlup，BMJ 1992）：失败率高于 p0 时上升，"
               "开始通过后下降。带判定界限的 CUSUM（Kestin，Br J Anaesth 1995；Bolsin、Colson，"
               "Int J Qual Health Care 2000），界限取自 Wald 序贯概率比检验（Ann Math Stat 1945）："
               "失败加 1 - s，成功减 s；自上次判定起低于 -h0 表示失败率可接受，高于 +h1 表示不可接受。")},
}
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback",
             "AR PL UMing CN", "SimHei")


def _chart_text(locale: str) -> dict[str, str]:
    """Chart labels in ``locale`` when a font can draw them, else in English (the page text stays localised)."""
    if locale != "zh":
        return TEXT["en"]
    from matplotlib import font_manager, rcParams

    have = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in have:
            rcParams["font.sans-serif"] = [name, *rcParams["font.sans-serif"]]
            return TEXT["zh"]
    return TEXT["en"]


def resident_chart(curves: list[Curve], settings: CusumSettings, t: dict[str, str]) -> str:
    """One resident's six panels (score, time, shots, contacts, two CUSUMs), one line per scenario, as a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from vr_trainer.session.cohort import png_data_uri

    fig = Figure(figsize=(12, 6.4))
    axes = fig.subplots(2, 3)
    panels = [("score", "score"), ("total_time_s", "time"), ("fluoro_shots", "shots"), ("risk_contacts", "contacts")]
    for ax, (key, label) in zip(axes.flat, panels):
        for c in curves:
            pts = [(r["attempt"], r[key]) for r in c.scored if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=c.scenario_id)
            if key == "score" and c.scored and c.scored[-1].get("pass_mark") is not None:
                ax.axhline(c.scored[-1]["pass_mark"], color="0.5", ls=":", lw=0.8)
            if key == "score":
                fails = [(r["attempt"], r["score"]) for r in c.scored if not r["passed"] and r["score"] is not None]
                if fails:
                    ax.plot(*zip(*fails), "x", color="tab:red", ms=6)
        ax.set_title(t[label], fontsize=9)
        if key in ("fluoro_shots", "risk_contacts"):  # counts: whole numbers from 0
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(bottom=0, top=max(1.0, ax.get_ylim()[1]))
    ax_c, ax_s = axes.flat[4], axes.flat[5]
    for c in curves:
        xs = [r["attempt"] for r in c.scored]
        if xs:
            ax_c.plot(xs, c.cusum, marker="o", ms=3, label=c.scenario_id)
            color = ax_s.plot(xs, c.sprt.values, marker="o", ms=3, label=c.scenario_id)[0].get_color()
            # the limits move with each decision (the next test starts from there)
            ax_s.step(xs, [r - c.sprt.h0 for r in c.sprt.refs], where="mid", color=color, ls="--", lw=0.7)
            ax_s.step(xs, [r + c.sprt.h1 for r in c.sprt.refs], where="mid", color=color, ls=":", lw=0.7)
            for n in c.sprt.acceptable_at:
                ax_s.plot(xs[n - 1], c.sprt.values[n - 1], "v", color="tab:green", ms=9)
            for n in c.sprt.unacceptable_at:
                ax_s.plot(xs[n - 1], c.sprt.values[n - 1], "^", color="tab:red", ms=9)
    ax_c.axhline(0.0, color="0.6", lw=0.8)
    ax_c.set_title(f"{t['cusum']} (p0 {settings.p0:g})", fontsize=9)
    _s, h0, h1 = settings.limits()
    ax_s.plot([], [], color="0.3", ls="--", lw=0.7, label=f"-h0 ({h0:.2f})")
    ax_s.plot([], [], color="0.3", ls=":", lw=0.7, label=f"+h1 ({h1:.2f})")
    ax_s.set_title(f"{t['sprt']} (p0 {settings.p0:g}, p1 {settings.p1:g}, "
                   f"\u03b1 {settings.alpha:g}, \u03b2 {settings.beta:g})", fontsize=9)
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(t["attempt"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    ax_s.legend(fontsize=7)
    fig.tight_layout()
    return png_data_uri(fig)


def write_html(curves: list[Curve], unreadable: list[tuple[str, str]], path: Path, locale: str,
               settings: CusumSettings, folder: str) -> None:
    """Write the page: a summary table, one chart per resident, the method, the unreadable files."""
    from vr_trainer.session.cohort import esc, resident_summary

    t = TEXT[locale]
    ct = _chart_text(locale)
    _s, h0, h1 = settings.limits()
    by_resident: dict[str, list[Curve]] = {}
    for c in curves:
        by_resident.setdefault(c.resident, []).append(c)
    rows = []
    for c in curves:
        s = resident_summary(c, settings, h0, h1)
        rows.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in (
            s["resident"], s["scenario_id"], s["attempts"], s["passed_attempts"], s["last_score"],
            s["attempts_to_first_pass"], s["cusum_acceptable_at"], s["cusum_unacceptable_at"])) + "</tr>")
    head = "".join(f"<th>{esc(t[k])}</th>" for k in ("resident", "scenario", "n", "passed", "last", "first_pass",
                                                       "acc", "unacc"))
    sections = []
    for resident, cs in by_resident.items():
        n = sum(len(c.rows) for c in cs)
        cut = sum(len(c.rows) - len(c.scored) for c in cs)
        note = f" ({cut} {esc(t['incomplete'])})" if cut else ""
        sections.append(f'<section class="resident" id="r-{esc(resident)}"><h2>{esc(resident)} - {n} '
                        f'{esc(t["attempts"])}{note}</h2><img class="chart" alt="{esc(resident)}" '
                        f'src="{resident_chart(cs, settings, ct)}"></section>')
    bad = ""
    if unreadable:
        bad = (f'<section class="unreadable"><h2>{esc(t["unreadable"])}</h2><ul>'
               + "".join(f"<li><code>{esc(p)}</code>: {esc(e)}</li>" for p, e in unreadable) + "</ul></section>")
    page = (f'<!DOCTYPE html><html lang="{locale}"><head><meta charset="utf-8"><title>{esc(t["title"])}</title>'
            "<style>body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:2px 8px;font-size:0.9em}img.chart{max-width:100%}"
            ".unreadable{color:#a00}</style></head><body>"
            f'<h1>{esc(t["title"])}</h1><p>{esc(t["folder"])}: <code>{esc(folder)}</code></p>'
            f"<table><tr>{head}</tr>{''.join(rows)}</table>{''.join(sections)}{bad}"
            f'<p class="method">{esc(t["method"])} p0 {settings.p0:g}, p1 {settings.p1:g}, '
            f"\u03b1 {settings.alpha:g}, \u03b2 {settings.beta:g}, h0 {h0:.3f}, h1 {h1:.3f}.</p></body></html>")
    path.write_text(page, encoding="utf-8")
