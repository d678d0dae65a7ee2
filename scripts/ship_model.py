"""Copy a trained run into models/<name>/ and write its Markdown model card.

    python scripts/ship_model.py runs/main/model.safetensors models/default/localizer \
        --eval runs/eval/main.json

The JSON card travels with the weights unchanged (plus the evaluation, when given); the
Markdown card (models/<name>/<stem>.md) is written from both so the two never disagree.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

LIMITS = {
    "shapes": "Trained from scratch on AV Studio's shapes world (moving textured shapes that sound like "
              "General-MIDI instruments). It shows how the method behaves; it has never seen natural "
              "video, so do not expect it to localize real things before fine-tuning.",
    "photo": "Trained from scratch on AV Studio's photo world (real pictures of sounding things with "
             "their own recordings, on real photographs; docs/ground_truth.md). A starting point for "
             "fine-tuning on your own clips (`avstudio train --init models/default`). Read the test "
             "numbers before trusting a heatmap: on real footage see docs/real_footage.md.",
}


def fmt(x, nd=2):
    return "n/a" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("weights", help="a .safetensors model file with its .json card")
    p.add_argument("dest", help="destination stem, e.g. models/default/localizer")
    p.add_argument("--eval", default=None, help="`avstudio eval` JSON of this model on the test split")
    p.add_argument("--world", choices=["photo", "shapes"], default="photo",
                   help="the synthetic world it was trained on (for the card's 'limits' text)")
    a = p.parse_args()
    src = Path(a.weights)
    dst = Path(a.dest)
    dst.parent.mkdir(parents=True, exist_ok=True)
    card = json.loads(src.with_suffix(".json").read_text())
    card.pop("history", None)  # the per-epoch log stays in the run folder
    if a.eval:
        ev = json.loads(Path(a.eval).read_text())
        card["metrics"] = {"test": {k: ev[k] for k in ("localization", "counting", "separation") if k in ev},
                           "test_data": ev.get("data")}
    shutil.copyfile(src, dst.with_suffix(".safetensors"))
    dst.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")

    lines = [f"# Model card: `{dst.parent.name}/{dst.name}`", ""]
    comps = ", ".join(card.get("components", {}))
    lines += [f"Components: {comps}. Format: safetensors weights + this JSON card "
              f"(`{dst.name}.json`); nothing is unpickled when loading.", ""]
    lines += ["## How it was made", "", "```sh", card.get("command", "?"), "```", ""]
    data = card.get("data", {})
    lines += [f"Data: {json.dumps(data)}", ""]
    if card.get("stages"):
        lines += ["| stage | k | clips | epochs | final loss | final matching acc |", "|---|---|---|---|---|---|"]
        for s in card["stages"]:
            lines.append(f"| {s.get('stage')} | {s.get('k')} | {s.get('clips')} | {s.get('epochs')} | "
                         f"{fmt(s.get('loss'), 3)} | {fmt(s.get('acc'), 3)} |")
        lines.append("")
    if card.get("train_seconds"):
        lines += [f"Training time: {card['train_seconds'] / 60:.1f} min on 2 CPU cores (shared).", ""]
    m = card.get("metrics", {}).get("test", {})
    if m.get("localization"):
        lines += ["## Test split (held-out seed), 0.5 binarisation", "",
                  "| level | model cIoU@0.5 | AUC | NSA | unaligned control | center prior | whole image |",
                  "|---|---|---|---|---|---|---|"]
        for lvl, r in m["localization"].items():
            g = lambda name, key="ciou@0.5", r=r: r.get(name, {}).get("0.5", {}).get(key)  # noqa: E731
            lines.append(f"| {lvl} | {fmt(g('model'))} | {fmt(g('model', 'auc'))} | {fmt(g('model', 'nsa'))} | "
                         f"{fmt(g('unaligned_center'))} | {fmt(g('center_prior'))} | {fmt(g('whole_image'))} |")
        lines.append("")
    if m.get("counting"):
        c = m["counting"]
        lines += [f"Counting accuracy: {fmt(c.get('accuracy'))} (majority class: {fmt(c.get('majority_baseline'))}).", ""]
    if m.get("separation"):
        lines += ["Separation: " + json.dumps(m["separation"].get("summary", m["separation"]))[:800], ""]
    lines += ["## Intended use and limits", "", LIMITS[a.world], ""]
    dst.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {dst.with_suffix('.safetensors')} and {dst.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
