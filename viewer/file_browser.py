"""A file and folder chooser drawn with ImGui: works on every machine (no zenity, kdialog or portal needed).

The system dialog (imgui-bundle's portable_file_dialogs) is used when the machine has one; otherwise `FileBrowser`
lists a folder's subfolders and matching files in an ImGui window. It holds only what it shows (folder, listing,
the chosen path); `draw()` runs inside the frame and never blocks.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from imgui_bundle import imgui


def system_dialog_available() -> bool:
    """portable_file_dialogs works here: a display and zenity, kdialog (Linux), or another platform's own."""
    if os.name != "posix" or os.uname().sysname == "Darwin":
        return True
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return any(shutil.which(tool) for tool in ("zenity", "kdialog", "qarma", "matedialog"))


class FileBrowser:
    """One open chooser. purpose: what the choice is for ("model", "dataset", "folder"); suffixes: files shown
    (empty: folders only, choose with "Use this folder"). `result` is set once the user picks (None while open or
    after Cancel); `open` turns False when the window closes."""

    def __init__(self, purpose: str, title: str, start: str | os.PathLike, suffixes: tuple[str, ...] = ()):
        self.purpose = purpose
        self.title = title
        self.suffixes = suffixes
        self.open = True
        self.result: str | None = None
        start_path = Path(start or ".").expanduser()
        self.folder = (start_path if start_path.is_dir() else start_path.parent).resolve()
        if not self.folder.is_dir():
            self.folder = Path.cwd()
        self._listing: tuple[list[str], list[str]] | None = None
        self.error = ""

    def entries(self) -> tuple[list[str], list[str]]:
        """(subfolders, files with a wanted suffix) of the current folder, names sorted; hidden ones left out."""
        if self._listing is None:
            dirs, files = [], []
            try:
                for entry in os.scandir(self.folder):
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir():
                        dirs.append(entry.name)
                    elif self.suffixes and entry.name.lower().endswith(self.suffixes):
                        files.append(entry.name)
                self.error = ""
            except OSError as e:
                self.error = f"cannot list {self.folder}: {e.strerror or e}"
            self._listing = (sorted(dirs, key=str.lower), sorted(files, key=str.lower))
        return self._listing

    def enter(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).resolve()
        self._listing = None

    def choose(self, path: str | os.PathLike) -> None:
        self.result = str(Path(path).resolve())
        self.open = False

    def draw(self) -> None:
        """The chooser's window (call once per frame while `open`)."""
        if not self.open:
            return
        display = imgui.get_io().display_size
        imgui.set_next_window_size(imgui.ImVec2(min(520.0, display.x), min(420.0, display.y)),
                                   imgui.Cond_.first_use_ever)
        imgui.set_next_window_pos(imgui.ImVec2(display.x * 0.5, display.y * 0.5), imgui.Cond_.first_use_ever,
                                  imgui.ImVec2(0.5, 0.5))
        visible, still_open = imgui.begin(self.title + "##vbnf-browser", True)
        if not still_open:
            self.open = False
        if visible:
            imgui.text_wrapped(str(self.folder))
            if imgui.button("Up") and self.folder.parent != self.folder:
                self.enter(self.folder.parent)
            imgui.same_line()
            if imgui.button("Home"):
                self.enter(Path.home())
            imgui.same_line()
            if not self.suffixes and imgui.button("Use this folder"):
                self.choose(self.folder)
            imgui.same_line()
            if imgui.button("Cancel"):
                self.open = False
            if self.error:
                imgui.text_wrapped(self.error)
            dirs, files = self.entries()
            imgui.begin_child("##entries", imgui.ImVec2(0, 0))
            for name in dirs:
                if imgui.selectable(f"[{name}]", False)[0]:
                    self.enter(self.folder / name)
                    break
            for name in files:
                if imgui.selectable(name, False)[0]:
                    self.choose(self.folder / name)
                    break
            imgui.end_child()
        imgui.end()
