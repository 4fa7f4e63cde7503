"""A picture of a real suggestion in Neovim: the plugin in a real terminal (tmux), the model's
ghost text on screen, rendered to PNG for the README (docs/nvim-suggestion.png)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from quill_cli.launcher import ServingProcess
from tests.conftest import ROOT, lsp_command
from tests.e2e.conftest import serving_log_dir

pytestmark = pytest.mark.e2e

NVIM = Path(sys.executable).parent / "nvim"
SOURCE = "def add(a, b):\n    return a +\n"
_SGR = re.compile(r"\x1b\[([0-9;]*)m")
_BASIC = [(0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200),
          (188, 63, 188), (17, 168, 205), (229, 229, 229)]  # fmt: skip
_BRIGHT = [(102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67), (59, 142, 234),
           (214, 112, 214), (41, 184, 219), (255, 255, 255)]  # fmt: skip
DEFAULT_FG, DEFAULT_BG = (220, 220, 220), (24, 24, 27)


def _xterm256(n: int) -> tuple[int, int, int]:
    if n < 8:
        return _BASIC[n]
    if n < 16:
        return _BRIGHT[n - 8]
    if n < 232:
        n -= 16
        steps = (0, 95, 135, 175, 215, 255)
        return steps[n // 36], steps[(n // 6) % 6], steps[n % 6]
    grey = 8 + (n - 232) * 10
    return grey, grey, grey


def parse_ansi(screen: str) -> list[list[tuple[str, tuple, tuple]]]:
    """Lines of (character, foreground, background) from `tmux capture-pane -e` output."""
    rows = []
    fg, bg = DEFAULT_FG, DEFAULT_BG
    for line in screen.split("\n"):
        row: list[tuple[str, tuple, tuple]] = []
        position = 0
        for match in _SGR.finditer(line):
            row += [(c, fg, bg) for c in line[position : match.start()]]
            position = match.end()
            codes = [int(c) if c else 0 for c in match.group(1).split(";")]
            i = 0
            while i < len(codes):
                code = codes[i]
                if code == 0:
                    fg, bg = DEFAULT_FG, DEFAULT_BG
                elif code in (38, 48) and i + 1 < len(codes):
                    if codes[i + 1] == 2 and i + 4 < len(codes):
                        color = tuple(codes[i + 2 : i + 5])
                        i += 4
                    elif codes[i + 1] == 5 and i + 2 < len(codes):
                        color = _xterm256(codes[i + 2])
                        i += 2
                    else:
                        color = DEFAULT_FG if code == 38 else DEFAULT_BG
                    fg, bg = (color, bg) if code == 38 else (fg, color)
                    i += 1
                elif 30 <= code <= 37:
                    fg = _BASIC[code - 30]
                elif 90 <= code <= 97:
                    fg = _BRIGHT[code - 90]
                elif 40 <= code <= 47:
                    bg = _BASIC[code - 40]
                elif code == 39:
                    fg = DEFAULT_FG
                elif code == 49:
                    bg = DEFAULT_BG
                i += 1
        row += [(c, fg, bg) for c in line[position:]]
        rows.append(row)
    return rows


def render_png(rows: list, path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    mono = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")  # Debian's fonts-dejavu
    font = ImageFont.truetype(str(mono), 16) if mono.exists() else ImageFont.load_default(size=16)
    cell_w, cell_h = 10, 20
    width = max((len(r) for r in rows), default=1)
    image = Image.new("RGB", (width * cell_w + 16, len(rows) * cell_h + 16), DEFAULT_BG)
    draw = ImageDraw.Draw(image)
    for y, row in enumerate(rows):
        for x, (char, fg, bg) in enumerate(row):
            box = (8 + x * cell_w, 8 + y * cell_h, 8 + (x + 1) * cell_w, 8 + (y + 1) * cell_h)
            if bg != DEFAULT_BG:
                draw.rectangle(box, fill=bg)
            if char.strip():
                draw.text((box[0], box[1]), char, fill=fg, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def test_screenshot_of_a_suggestion_in_neovim(real_serving: ServingProcess, tmp_path: Path) -> None:
    tmux = shutil.which("tmux")
    assert tmux, "tmux is needed for the Neovim screenshot (apt-get install tmux)"
    assert NVIM.exists(), f"no nvim next to python: {NVIM}"
    source = tmp_path / "add.py"
    source.write_text(SOURCE)
    params = {
        "plugin_dir": str(ROOT / "editors" / "nvim"),
        "file": str(source),
        "setup": {"cmd": lsp_command(), "serving_address": real_serving.address,
                  "settings": {"requestTimeoutS": 120}},
    }  # fmt: skip
    session = f"quill-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "QUILL_NVIM_PARAMS": json.dumps(params), "TERM": "xterm-256color",
           "COLORTERM": "truecolor"}  # fmt: skip
    command = f"{NVIM} --clean -u {ROOT / 'tests' / 'data' / 'nvim' / 'screenshot.lua'}"
    subprocess.run(
        [tmux, "new-session", "-d", "-s", session, "-x", "72", "-y", "8", command],
        env=env, check=True, timeout=30,
    )  # fmt: skip
    screen = ""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.5)
            plain = subprocess.run(
                [tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            line = next((row for row in plain.splitlines() if "return a +" in row), "")
            if "INSERT" in plain and not line.rstrip().endswith("return a +"):
                time.sleep(0.5)  # let the ghost text settle
                screen = subprocess.run(
                    [tmux, "capture-pane", "-p", "-e", "-t", session],
                    capture_output=True,
                    text=True,
                ).stdout
                break
    finally:
        subprocess.run([tmux, "kill-session", "-t", session], capture_output=True)
    assert screen, "no ghost text appeared after `return a +` within 120 s"
    rows = parse_ansi(screen.rstrip("\n"))
    ghost_line = next(r for r in rows if "return a +" in "".join(c for c, _, _ in r))
    text = "".join(c for c, _, _ in ghost_line)
    after = text.index("return a +") + len("return a +")
    ghost = [cell for cell in ghost_line[after:] if cell[0].strip()]
    assert ghost, f"nothing after the cursor: {text!r}"
    # Ghost text is drawn in a different colour from the code the user typed.
    typed_colour = ghost_line[text.index("return")][1]
    assert any(fg != typed_colour for _, fg, _ in ghost), "suggestion not drawn as ghost text"
    out = serving_log_dir() / "nvim-suggestion.png"
    render_png(rows, out)
    assert out.read_bytes()[:4] == b"\x89PNG"
    if os.environ.get("QUILL_UPDATE_DOCS"):
        shutil.copy(out, ROOT / "docs" / "nvim-suggestion.png")
