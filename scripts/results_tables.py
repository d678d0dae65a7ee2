"""Print the Markdown tables of docs/results.md from runs/eval/*.json and the runs' histories.

    python scripts/results_tables.py > /tmp/tables.md
"""

from __future__ import annotations

import json
from pathlib import Path

R = Path("runs")
E = R / "eval"


def load(name):
    p = E / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def g(ev, lvl, who="model", how="0.5", key="ciou@0.5"):
    try:
        v = ev["localization"][lvl][who][how][key]
    except (KeyError, TypeError):
        return "–"
    return f"{v:.2f}"


def history(run):
    p = R / run / "history.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def main() -> None:
    main_ev = load("main2") or load("main_model")
    if main_ev:
        print("### Localization on the test split (seed 3), shipped model\n")
        print("| level | binarisation | model cIoU@0.5 | AUC | NSA | aligned center | unaligned center | center prior | whole image |")
        print("|---|---|---|---|---|---|---|---|---|")
        for lvl in main_ev["localization"]:
            for how in ("0.5", "median"):
                print(f"| {lvl} | {how} | {g(main_ev, lvl, how=how)} | {g(main_ev, lvl, how=how, key='auc')} | "
                      f"{g(main_ev, lvl, how=how, key='nsa')} | {g(main_ev, lvl, 'aligned_center', how)} | "
                      f"{g(main_ev, lvl, 'unaligned_center', how)} | {g(main_ev, lvl, 'center_prior', how)} | "
                      f"{g(main_ev, lvl, 'whole_image', how)} |")
        c = main_ev.get("counting")
        if c:
            print(f"\nCounting accuracy {c['accuracy']:.2f} (majority class {c['majority_baseline']:.2f}); "
                  f"per level {json.dumps({k: round(v, 2) for k, v in c['per_level'].items()})}\n")
    print("### (a) Convergence: C1 alone vs C3 alone, from scratch (same steps)\n")
    print("| steps | C1 loss | C1 acc | C3 loss | C3 acc |\n|---|---|---|---|---|")
    h1, h3 = history("only_c1"), history("only_c3")
    s1 = s3 = 0
    rows = {}
    for e in h1:
        s1 += e["steps"]
        rows.setdefault(s1, {})["c1"] = e
    for e in h3:
        s3 += e["steps"]
        rows.setdefault(s3, {})["c3"] = e
    for s in sorted(rows):
        a, b = rows[s].get("c1"), rows[s].get("c3")
        f = lambda e, k: f"{e[k]:.3f}" if e else ""  # noqa: E731
        print(f"| {s} | {f(a, 'loss')} | {f(a, 'acc')} | {f(b, 'loss')} | {f(b, 'acc')} |")
    print("\n### (b), (c), (d) at the reduced scale\n")
    print("| model | C1 cIoU@0.5 | C1 NSA | C2 per-source cIoU@0.5 | C2 NSA | C3 per-source cIoU@0.5 | C2 unaligned |")
    print("|---|---|---|---|---|---|---|")
    for name, label in [("main_stages_C1", "C1 only (stage 1 of the curriculum)"),
                        ("main_stages_C2", "C2(C1), source-level alignment"),
                        ("c2_scene_model", "C2(C1), scene-level alignment"),
                        ("wrong_order_model", "C1(C2): wrong order"),
                        ("main_model", "curriculum C1→C2→C3"),
                        ("mixed_model", "no curriculum (mixed levels, same steps)")]:
        ev = load(name)
        if ev:
            print(f"| {label} | {g(ev, 'C1')} | {g(ev, 'C1', key='nsa')} | {g(ev, 'C2')} | {g(ev, 'C2', key='nsa')} | "
                  f"{g(ev, 'C3')} | {g(ev, 'C2', 'unaligned_center')} |")
    other = load("other")
    if other:
        print("\n### (e) Other seeds and another mix of classes\n")
        print("| level | cIoU@0.5 | NSA | unaligned | center prior |\n|---|---|---|---|---|")
        for lvl in other["localization"]:
            print(f"| {lvl} | {g(other, lvl)} | {g(other, lvl, key='nsa')} | {g(other, lvl, 'unaligned_center')} | "
                  f"{g(other, lvl, 'center_prior')} |")
        if other.get("counting"):
            print(f"\nCounting accuracy {other['counting']['accuracy']:.2f}")


if __name__ == "__main__":
    main()
