"""The action table (avstudio.studio.actions): one row per action, shared by the window, the
panels and Help › Keyboard."""

from __future__ import annotations

from collections import Counter

from avstudio.studio.actions import MENUS, all_actions, by_name, owned_by, player_action_names


def test_names_and_keys_are_unique():
    names = [a.name for a in all_actions()]
    assert len(names) == len(set(names))
    keys = Counter(k for a in all_actions() for k in a.keys)
    assert [k for k, n in keys.items() if n > 1] == []


def test_menus_and_owners():
    assert [m.title for m in MENUS] == ["File", "Edit", "Playback", "View", "Clusters", "Analysis", "Library", "Boxes",
                                        "Help"]
    assert MENUS[0].actions[-1].name == "quit"  # the library's file actions come before Quit
    owners = {a.owner for a in all_actions()}
    assert owners == {"window", "viewer", "analysis", "sound", "compare", "library", "annotation", "boxes"}
    assert all(a.checkable for a in all_actions() if a.checked)
    # the player's own actions (docs/gui.md), the library's (docs/library.md) and the box tool's
    # split the table
    lib = {a.name for a in owned_by("library") + owned_by("annotation")} | {"show_finetune"}
    boxes = {a.name for a in owned_by("boxes")}
    assert player_action_names() | lib | boxes == set(by_name())
    assert not player_action_names() & lib and not (player_action_names() | lib) & boxes
