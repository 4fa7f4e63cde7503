"""A small workspace for retrieval tests (unit and e2e) and the steps they share."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pytest_lsp import LanguageClient

from lsp_server import workspace_identity as identity

BILLING = '''def compute_invoice_total(items, tax_rate):
    """Sum of prices plus tax."""
    return sum(item.price for item in items) * (1 + tax_rate)
'''
SHAPES = "class Circle:\n    def area(self):\n        return 3.14159 * self.radius ** 2\n"


def write_workspace(root: Path, main: str) -> None:
    """shop/billing.py, geo.py and main.py; plus a binary and a .gitignore'd file (not synced)."""
    (root / "shop").mkdir()
    (root / "shop" / "billing.py").write_text(BILLING)
    (root / "geo.py").write_text(SHAPES)
    (root / "main.py").write_text(main)
    (root / "image.png").write_bytes(b"\x89PNG\x00\x00")
    (root / ".gitignore").write_text("build/\n")
    (root / "build").mkdir()
    (root / "build" / "generated.py").write_text("generated = True\n")


def workspace_id(root: Path) -> str:
    """The id a language server of this user derives from the root (same per-user key)."""
    return identity.workspace_id(root.as_uri())


async def initialize_in(
    client: LanguageClient, root: Path, address: str, **options: object
) -> None:
    """Initialize with `root` as the workspace, progress support and retrieval on."""
    await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True)
            ),
            root_uri=root.as_uri(),
            initialization_options={"servingAddress": address, "retrieval": True, **options},
        )
    )
