#!/bin/sh
# Installs the locked dependencies, builds (minified) and packages the extension into
# editors/vscode/quill-vscode.vsix with @vscode/vsce 4.1.0 (a pinned devDependency).
set -eu
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund
npm run package
