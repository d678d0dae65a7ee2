"""Every action of the app in one declarative table: name, text, keys, menu, tooltip, icon, and
the method it calls (of the window, or of a panel: ``owner``).

The window builds its QActions, its menus and Help › Keyboard from this table; the panels'
buttons trigger the same actions by name; the tests trigger them by name. The order here is the
order of the menus (and of the keyboard help).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Action:
    name: str  # the QAction's object name
    text: str  # menu text (& marks the mnemonic)
    slot: str  # the method called, on ``owner``; a checkable action passes its new state
    keys: tuple[str, ...] = ()
    tip: str = ""  # tooltip and status tip (the keys are added to the tooltip)
    icon: Optional[str] = None  # an icon of resources/icons, or "std:<QStyle.StandardPixmap>"
    checkable: bool = False
    checked: bool = False  # its state at start (checkable actions)
    args: tuple = ()  # passed to the slot
    owner: str = "window"  # window | viewer | analysis | sound | compare (the window's parts) | library | annotation | boxes
    after: str = ""  # what follows it in its menu: "separator", or "recent" (the Open recent menu)
    submenu: str = ""  # the submenu of its menu it goes in ("": the menu itself)


@dataclass(frozen=True)
class Menu:
    title: str
    actions: tuple[Action, ...]
    player: bool = True  # the player's own menu (docs/gui.md lists its keys; the library's are in docs/library.md)


def _owned(owner: str):
    def make(*args, **kw) -> Action:
        return Action(*args, owner=owner, **kw)
    return make


# rows by owner: A the window, V its viewer, S its sound, N its analysis, L the library panel,
# T the library's annotation, B the box tool, C the second model (compare)
A = Action
V, S, N, L, T, B, C = (_owned(o) for o in ("viewer", "sound", "analysis", "library", "annotation", "boxes",
                                              "compare"))


def _clusters() -> tuple[Action, ...]:
    show = tuple(V(f"toggle_cluster_{j + 1}", f"Show/hide sound {j + 1}", "toggle_cluster", (str(j + 1),),
                   f"Show or hide the heatmap of sound {j + 1}", args=(j,),
                   after="separator" if j == 5 else "") for j in range(6))
    solo = tuple(S(f"solo_cluster_{j + 1}", f"Solo sound {j + 1}", "toggle_solo", (f"Ctrl+{j + 1}",),
                   f"Solo the separated sound {j + 1}", args=(f"c{j}",),
                   after="separator" if j == 5 else "") for j in range(6))
    return show + solo + (
        S("solo_mix", "Solo the original mix", "toggle_solo", ("Ctrl+9",), "Solo the original mix", args=("mix",)),
        S("unsolo", "Clear solos", "clear_solos", ("Ctrl+Shift+0",), "Un-solo every track"),
    )


FILE = (
    A("open", "&Open video…", "open_dialog", ("Ctrl+O",), "Open a video", "std:SP_DialogOpenButton"),
    A("open_demo", "Open the &demo clip", "open_demo", (), "Open the bundled demo clip", after="recent"),
    A("export_video", "&Export video with overlays…", "export", ("Ctrl+E",),
      "Write an mp4 with the heatmaps burnt in and the mix you hear", args=("video",)),
    A("export_stems", "Export &stems (WAV)…", "export", ("Ctrl+Shift+E",), "Write one WAV file per sound cluster",
      args=("stems",)),
    A("export_heatmaps", "Export &heatmaps (npz)…", "export", ("Ctrl+Shift+H",),
      "Write heatmaps [T, K, h, w] and times [T] as .npz", args=("heatmaps",), after="separator"),
)
QUIT = A("quit", "&Quit", "close", ("Ctrl+Q",), "Quit")
LIBRARY_FILE = (
    L("new_library", "&New library…", "new_library_dialog", (), "Create a clip library"),
    L("open_library", "Open &library…", "open_library_dialog", ("Ctrl+L",), "Open a clip library"),
    L("import_folder", "&Import folder into the library…", "import_folder_dialog", ("Ctrl+I",),
      "Add every video of a folder (and its sub-folders) to the library"),
    L("import_manifest", "Import &manifest into the library…", "import_manifest_dialog", (),
      "Add the clips and counts of a manifest CSV (path,count)", after="separator"),
    L("export_library_csv", "Export library as CS&V…", "export_dialog", (),
      "Write the annotated clips as a manifest CSV", args=("csv",)),
    L("export_library_json", "Export library as &JSON…", "export_dialog", (),
      "Write every clip with its annotation history, predictions and runs as JSON", args=("json",), after="separator"),
    L("close_library", "Close library", "close_library", (), "Close the clip library",
      after="separator"),
)
EDIT = (
    T("undo", "&Undo", "undo", ("Ctrl+Z",), "Undo the last annotation change"),
    T("redo", "&Redo", "redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Redo the annotation change undone last"),
)
PLAYBACK = (
    V("play", "&Play / pause", "toggle_play", ("Space",), "Play or pause", "play"),
    V("pause", "Pause (shuttle stop)", "shuttle_stop", ("K",), "Pause"),
    V("shuttle_forward", "Shuttle forward (faster each press)", "shuttle", ("L",),
      "Play forwards; press again to go faster", args=(1,)),
    V("shuttle_back", "Shuttle backward (faster each press)", "shuttle", ("J",),
      "Play backwards; press again to go faster", args=(-1,)),
    V("step_forward", "Next frame", "step", (".", "Right"), "Next frame", "step_forward", args=(1,)),
    V("step_back", "Previous frame", "step", (",", "Left"), "Previous frame", "step_back", args=(-1,)),
    V("forward_1s", "Forward 1 s", "skip", ("Shift+Right",), "Forward one second", args=(1.0,)),
    V("back_1s", "Back 1 s", "skip", ("Shift+Left",), "Back one second", args=(-1.0,)),
    V("forward_10s", "Forward 10 s", "skip", ("PgDown", "Ctrl+Shift+Right"), "Forward ten seconds", args=(10.0,)),
    V("back_10s", "Back 10 s", "skip", ("PgUp", "Ctrl+Shift+Left"), "Back ten seconds", args=(-10.0,)),
    V("go_start", "Go to start", "go_start", ("Home",), "Go to the first frame", "go_start"),
    V("go_end", "Go to end", "go_end", ("End",), "Go to the last frame", "go_end"),
    V("slower", "Slower", "change_speed", ("[",), "Slower playback", args=(-1,)),
    V("faster", "Faster", "change_speed", ("]",), "Faster playback", args=(1,)),
    V("normal_speed", "Normal speed", "set_speed", ("=",), "Normal speed (1×)", args=(1.0,)),
    S("mute_all", "Mute output", "toggle_master_mute", ("M",), "Mute or unmute the sound", checkable=True,
      after="separator"),
)
VIEW = (
    V("toggle_overlays", "Show &overlays", "toggle_overlays", ("O",), "Show or hide every heatmap overlay",
      checkable=True, checked=True),
    V("cycle_threshold", "Cycle threshold mode", "cycle_threshold", ("T",), "Fixed / Otsu / mean + std"),
    V("opacity_up", "More opaque overlays", "change_opacity", ("Shift+O",), "Increase overlay opacity", args=(0.1,)),
    V("opacity_down", "More transparent overlays", "change_opacity", ("Alt+O",), "Decrease overlay opacity",
      args=(-0.1,), after="separator"),
    S("clear_marker", "Clear the clicked spot", "clear_marker", ("Esc",),
      "Remove the marker and stop the pixel's sound"),
    V("zoom_in", "Zoom timeline in", "zoom_timeline", ("Ctrl+=",), "Zoom the timeline in around the playhead",
      args=(2.0,)),
    V("zoom_out", "Zoom timeline out", "zoom_timeline", ("Ctrl+-",), "Zoom the timeline out", args=(0.5,)),
    V("zoom_fit", "Whole clip in timeline", "timeline_fit", ("Ctrl+0",), "Show the whole clip", after="separator"),
    V("fullscreen", "Full screen", "toggle_fullscreen", ("F11",), "Full screen"),
)
ANALYSIS = (
    A("load_model", "Load &model…", "load_model_dialog", ("Ctrl+M",), "Load a model file or folder"),
    N("cancel_analysis", "&Cancel analysis", "cancel", ("Ctrl+.",), "Stop the analysis (what is done is kept)"),
    N("resume_analysis", "&Resume analysis", "resume", ("Ctrl+R",), "Resume (or restart) the analysis",
      after="separator"),
    N("clear_cache", "Forget cached results for this clip", "clear_clip_cache", (),
      "Delete this clip's cached heatmaps and stems and analyse again", after="separator"),
    A("compare_model", "Open a &second model beside…", "compare_model_dialog", ("Ctrl+Shift+M",),
      "Show a second model's heatmaps (B) beside this model's (A), on the same frame"),
    C("close_compare", "Close the second model", "close_model", (), "Back to one model"),
    C("compare_side_by_side", "Models side by side (A left, B right)", "set_side_by_side", ("Ctrl+\\",),
      "Two panes, A left and B right; off: one pane, \\ flips between A and B", checkable=True, checked=True),
    C("flip_ab", "Flip A/B", "flip", ("\\",), "One pane: show the other model's heatmaps on the same frame"),
)
_NAMES = {0: "0 sources (none audible)", 1: "1 source"}
LIBRARY = tuple(
    T(f"annotate_{n}", f"Count: {_NAMES.get(n, f'{n} sources')}", "annotate_player_clip", (),
      f"The clip in the player has {n} audible source{'s' if n != 1 else ''}; go to the next clip to annotate",
      args=(n,)) for n in range(5)) + (
    T("annotate_other", "Count: other…", "annotate_other", (),
      "Type the number of audible sources of the clip in the player (0 to 16)"),
    T("annotate_unsure", "Unsure / can't tell", "toggle_unsure", (),
      "Mark the count of the clip in the player as unsure (a clip without a count: can't tell)"),
    T("annotate_clear", "Clear the annotation", "clear_player_clip", (),
      "Make the clip in the player unannotated again", after="separator"),
    T("next_unannotated", "&Next clip to annotate", "go_next", ("N",),
      "Open the next clip to annotate (the counter's least certain first)"),
    T("annotate_keys", "Number keys annotate (0–4, ?)", "set_annotation_keys", (),
      "While on, 0–4 and ? annotate the clip in the player (instead of showing/hiding sounds and the keyboard help)",
      checkable=True, after="separator"),
    L("find_clips", "&Find clips", "focus_search", ("Ctrl+F",), "Search the library's clips",
      after="separator"),
    L("predict_counts", "&Predict counts of unannotated clips", "predict_counts", (),
      "Run the model's source counter over the clips not annotated yet", after="separator"),
    A("show_finetune", "&Fine-tune on the library…", "show_finetune", (),
      "Fine-tune the model on the library's annotated clips, simple scenes first"),
)
BOXES = (
    B("box_tool", "&Box tool", "set_active", ("B",),
      "Draw boxes around what makes the sound (boxes are kept in the clip library)", "box", checkable=True),
    B("box_next_frame", "Next frame with boxes", "next_frame", ("Alt+Right",), "Jump to the next annotated frame"),
    B("box_prev_frame", "Previous frame with boxes", "prev_frame", ("Alt+Left",),
      "Jump to the previous annotated frame", after="separator"),
    B("box_delete", "Delete the selected box", "delete_selected", (), "Delete the selected box (Delete, Backspace)"),
    B("box_copy_nearby", "Copy the nearby boxes here", "copy_nearby", (),
      "Put the boxes of the nearest annotated frame on this frame (C)"),
    B("box_label", "Label the selected box…", "label_selected", (), "Give the selected box a label (F2, or double-click it)"),
    B("box_cancel", "Cancel the box gesture / deselect", "cancel", (),
      "Drop the box being drawn, or the selection (Esc)", after="separator"),
    B("box_import", "&Import boxes…", "import_dialog", (),
      "Read a box file (VGG-SS JSON, SoundNet-Flickr XML, AV Studio JSON) into the library"),
    B("box_export", "E&xport boxes…", "export_dialog", (),
      "Write the library's boxes as VGG-SS JSON, SoundNet-Flickr XML or AV Studio JSON", after="separator"),
) + tuple(B(f"box_source_{n}", f"Tie the box to sound {n}", "tie_source", (),
            f"Tie the selected box to sound {n} (again: untie) ({n})", args=(n,),
            submenu="Tie the selected box to sound") for n in range(1, 10))
HELP = (
    A("keyboard", "&Keyboard shortcuts", "show_keys", ("F1", "?"), "List every shortcut"),
    A("reading_heatmaps", "&Reading the heatmaps", "show_reading", (),
      "What the fill, the outline, the threshold and the focus lane mean"),
    A("about", "&About AV Studio", "show_about", (), "About"),
)

#: the menu bar, left to right
MENUS: tuple[Menu, ...] = (
    Menu("File", FILE + LIBRARY_FILE + (QUIT,)),
    Menu("Edit", EDIT, player=False),
    Menu("Playback", PLAYBACK),
    Menu("View", VIEW),
    Menu("Clusters", _clusters()),
    Menu("Analysis", ANALYSIS),
    Menu("Library", LIBRARY, player=False),
    Menu("Boxes", BOXES, player=False),
    Menu("Help", HELP),
)


def all_actions() -> list[Action]:
    return [a for m in MENUS for a in m.actions]


def by_name() -> dict[str, Action]:
    return {a.name: a for a in all_actions()}


def player_action_names() -> set[str]:
    """The player's own actions (docs/gui.md's key table); the rest belong to the library panels."""
    return {a.name for m in MENUS if m.player for a in m.actions if a.owner not in ("library", "annotation")}


def owned_by(owner: str) -> list[Action]:
    return [a for a in all_actions() if a.owner == owner]
