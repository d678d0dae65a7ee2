"""Screenshots of the clip library and fine-tune panels (called by ``scripts/screenshot.py --panels``).

Renders a few synthetic clips (1, 2 and 3 sources), makes a library of them, annotates six
as a person would (one unsure) from their ground truth, lets the model's counter predict the
others, opens the clip to annotate next in the player, and grabs the window to
``screenshot_library.png``. Then fine-tunes the model on the library from the panel (stages
C1 and C2, a real ``avstudio train`` process) and grabs the panel with its curves to
``screenshot_finetune.png``.
"""

from __future__ import annotations

import time
from pathlib import Path


def shoot_panels(win, pump, out_dir: Path, tmp: Path, timeout: float = 1200.0) -> list[Path]:
    from PySide6.QtCore import Qt

    from avstudio.data.manifest import read_manifest
    from avstudio.data.synth import SynthConfig, generate

    out_dir = Path(out_dir)
    t0 = time.time()
    man = generate(tmp / "recordings", 9, sources=(1, 2, 3), seed=21,
                   config=SynthConfig(size=(320, 180), duration=3.0, n_distractors=(0, 1)))
    print(f"panels: 9 synthetic clips in {time.time() - t0:.0f} s")
    truth = {str(Path(r.path).resolve()): r.count for r in read_manifest(man)}

    panel = win.library_panel
    panel.open_library(str(tmp / "my_clips.avlib"), create=True)
    panel.import_paths(folder=str(tmp / "recordings"))
    pump(300, lambda: panel.job is not None and not panel.job.isRunning() and not panel.job_row.isVisible())
    lib = panel.lib
    rows = lib.clips(order_by="path")
    for i, r in enumerate(rows[:6]):  # annotated by hand, one of them unsure
        lib.annotate(r.id, truth[str(Path(r.path).resolve())], unsure=(i == 4), who="ana")
    panel.refresh()
    if win.player.bundle is not None and win.player.bundle.counter is not None:
        panel.predict_counts()
        pump(300, lambda: not panel.job.isRunning() and not panel.job_row.isVisible())
    panel.refresh()
    win.resizeDocks([win.library_dock], [560], Qt.Orientation.Horizontal)
    nxt = panel.annotator.go_next()
    if nxt is not None and win.player.bundle is not None:
        pump(300, lambda: win.player.analysis_state in ("done", "failed", "cancelled"))
        win.viewer.seek(win.player.video_start + 0.4 * win.player.duration)
    pump(2.0)
    shots = [out_dir / "screenshot_library.png"]
    win.grab().save(str(shots[0]))
    print(f"wrote {shots[0]}")

    ft = win.finetune_panel
    win.finetune_dock.show()
    win.finetune_dock.raise_()
    win.resizeDocks([win.finetune_dock], [400], Qt.Orientation.Vertical)
    pump(1.0, lambda: len(ft._stage_boxes) >= 2)
    # a first run, cancelled early (it could be resumed from the runs list)
    for c, box in ft._stage_boxes.items():
        box.setChecked(c == 1)
    ft.epochs_spin.setValue(2)
    if ft.start() is not None:
        pump(300, lambda: ft.proc is None or (ft.last_event is not None and ft.last_event.task.startswith("train")))
        ft.cancel()
        pump(60, lambda: ft.proc is None)
        print(f"panels: first run {ft.last_status}")
    for c, box in ft._stage_boxes.items():
        box.setChecked(c in (1, 2))
    ft.epochs_spin.setValue(3)
    ft.counter_spin.setValue(1)
    ft.batch_spin.setValue(4)
    ft.repeats_spin.setValue(6)
    ft.lr_combo.setCurrentText("3e-4")
    t0 = time.time()
    rid = ft.start()
    if rid is None:
        print("panels: the fine-tuning run did not start")
        return shots
    pump(timeout, lambda: ft.proc is None)
    print(f"panels: fine-tuning {ft.last_status} in {time.time() - t0:.0f} s: {ft.status.text()}")
    ft.select_run(rid)
    pump(1.0)
    shots.append(out_dir / "screenshot_finetune.png")
    win.finetune_dock.grab().save(str(shots[1]))
    print(f"wrote {shots[1]}")
    return shots
