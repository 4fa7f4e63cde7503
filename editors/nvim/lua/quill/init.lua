-- Quill for Neovim: registers `quill lsp` and turns on Neovim's native inline completion
-- (ghost text). Needs Neovim 0.12 (`vim.lsp.config`, `vim.lsp.enable`,
-- `vim.lsp.inline_completion`). See `:help quill`.

local M = {}

M.name = "quill"

local defaults = {
  cmd = { "quill", "lsp" },
  filetypes = {
    "python",
    "lua",
    "javascript",
    "javascriptreact",
    "typescript",
    "typescriptreact",
    "go",
    "rust",
    "c",
    "cpp",
    "java",
    "sh",
  },
  root_markers = { ".git", "pyproject.toml", "package.json", "go.mod", "Cargo.toml" },
  serving_address = nil, -- nil: the server's default (127.0.0.1:50051 or $QUILL_SERVING_ADDRESS)
  -- How to reach a shared serving (docs/security.md); nil: the server's defaults ($QUILL_TOKEN,
  -- else the local token of a serving on this machine; plain text to loopback).
  serving = {
    token_file = nil, -- file holding your bearer token
    token = nil, -- the token itself (prefer token_file or $QUILL_TOKEN)
    tls = nil, -- true: TLS to serving
    ca_file = nil, -- CA (PEM) verifying serving's certificate; nil: the system's roots
    client_cert = nil, -- mutual TLS: your certificate chain (PEM)
    client_key = nil, -- mutual TLS: its private key (PEM)
  },
  completion_mode = "auto", -- "auto" | "single" | "multi"
  settings = {}, -- more initializationOptions, camelCase (maxTokens, requestTimeoutS, ...)
  inline_completion = true, -- call vim.lsp.inline_completion.enable(true)
  keymaps = {
    accept = "<Tab>", -- insert mode; a plain <Tab> when no suggestion is shown
    next = "<M-]>", -- cycle to the next suggestion
    prev = false, -- cycle back, e.g. "<M-[>"
  },
}

M.defaults = defaults

--- The options in effect after setup() (read by :checkhealth quill).
M.config = nil
--- Why setup() refused to start, if it did (read by :checkhealth quill).
M.setup_error = nil
--- The command of a language server that exited with an error this session.
M.exited_cmd = nil

local notified = {}

--- One message per distinct key for the whole session: setup() may run again (plugin
--- managers, re-sourced configs) and must never repeat the same complaint.
local function notify_once(key, msg, level)
  if notified[key] then
    return
  end
  notified[key] = true
  vim.notify("quill: " .. msg, level or vim.log.levels.ERROR)
end

--- The Neovim APIs Quill needs, or nil and a reason.
local function native_api()
  local ok_config, has_config = pcall(function()
    return vim.lsp ~= nil and vim.lsp.config ~= nil and type(vim.lsp.enable) == "function"
  end)
  if not ok_config or not has_config then
    return nil, "vim.lsp.config / vim.lsp.enable are missing"
  end
  local ok_ic, ic = pcall(require, "vim.lsp.inline_completion")
  if
    not ok_ic
    or type(ic) ~= "table"
    or type(ic.enable) ~= "function"
    or type(ic.get) ~= "function"
  then
    return nil, "vim.lsp.inline_completion is missing"
  end
  return ic
end

local function version_string()
  local ok, v = pcall(vim.version)
  if ok and type(v) == "table" then
    return string.format("%d.%d.%d", v.major or 0, v.minor or 0, v.patch or 0)
  end
  return "unknown"
end

local function merge(opts)
  opts = opts or {}
  local config = vim.deepcopy(defaults)
  for key, value in pairs(opts) do
    if key == "keymaps" and type(value) == "table" then
      for name, lhs in pairs(value) do
        config.keymaps[name] = lhs
      end
    else
      config[key] = value
    end
  end
  return config
end

-- `serving` option -> the language server's initializationOptions key.
local SERVING_KEYS = {
  token_file = "servingTokenFile",
  token = "servingToken",
  tls = "servingTls",
  ca_file = "servingCaFile",
  client_cert = "servingClientCert",
  client_key = "servingClientKey",
}

function M.init_options(config)
  local options = {}
  for key, value in pairs(config.settings or {}) do
    options[key] = value
  end
  if config.serving_address then
    options.servingAddress = config.serving_address
  end
  for key, option in pairs(SERVING_KEYS) do
    local value = (config.serving or {})[key]
    if value ~= nil then
      options[option] = value
    end
  end
  if config.completion_mode then
    options.completionMode = config.completion_mode
  end
  return options
end

--- The server's `quill/inlineCompletionRefresh`: the suggestion shown in a buffer grew (a
--- streamed block's next lines). Neovim's inline completion has no public "ask again", so this
--- fires the CursorMovedI of that buffer's own inline-completion autocmd group, which asks again
--- after its usual debounce; only in insert mode, in the current buffer.
M.REFRESH = "quill/inlineCompletionRefresh"
function M.on_refresh(_, params)
  local uri = params and params.textDocument and params.textDocument.uri
  if type(uri) ~= "string" then
    return
  end
  local bufnr = vim.uri_to_bufnr(uri)
  if bufnr ~= vim.api.nvim_get_current_buf() or not vim.api.nvim_get_mode().mode:match("^i") then
    return
  end
  pcall(vim.api.nvim_exec_autocmds, "CursorMovedI", {
    group = string.format("nvim.lsp.inline_completion:%d", bufnr),
    buffer = bufnr,
  })
end

--- The quill clients, those attached to {bufnr} when given.
function M.clients(bufnr)
  local ok, clients = pcall(vim.lsp.get_clients, { name = M.name, bufnr = bufnr })
  return ok and clients or {}
end

--- Runs the server command `quill.stats`; calls {callback}(err, result) with
--- result = {shown, accepted, acceptedChars, servingAvailable}.
function M.stats(callback)
  local client = M.clients(vim.api.nvim_get_current_buf())[1] or M.clients()[1]
  if not client then
    callback("no quill language server is running (see :checkhealth quill)", nil)
    return
  end
  local params = { command = "quill.stats", arguments = {} }
  client:request("workspace/executeCommand", params, function(err, result)
    if err then
      callback(err.message or vim.inspect(err), nil)
    else
      callback(nil, result)
    end
  end, vim.api.nvim_get_current_buf())
end

local function show_stats()
  M.stats(function(err, result)
    if err then
      vim.notify("quill: " .. err, vim.log.levels.WARN)
      return
    end
    vim.notify(
      string.format(
        "quill: shown %d, accepted %d (%d chars), serving %s",
        result.shown or 0,
        result.accepted or 0,
        result.acceptedChars or 0,
        result.servingAvailable and "available" or "unavailable"
      ),
      vim.log.levels.INFO
    )
  end)
end

--- Repairs lines {first}..{last} (1-based, inclusive; default: the cursor's line) of the
--- current buffer. The server decodes candidate patches (its $/progress shows in Neovim's LSP
--- progress), then vim.ui.select lists them ranked and the chosen edit is applied. Leaving the
--- buffer cancels the request (and serving's decoding); so does editing it. With {callback},
--- callback(err, result) gets the server's answer instead of the picker.
function M.repair(first, last, callback)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.clients(bufnr)[1]
  if not client then
    vim.notify("quill: no quill language server on this buffer", vim.log.levels.WARN)
    return
  end
  first = first or vim.api.nvim_win_get_cursor(0)[1]
  last = last or first
  local arguments = {
    uri = vim.uri_from_bufnr(bufnr),
    startLine = first - 1,
    endLine = last - 1,
    apply = false,
  }
  -- The workspace's test command (settings.repairTestCommand) picks the fix: candidates whose
  -- tests pass rank first.
  local test_command = M.config and M.config.settings and M.config.settings.repairTestCommand
  if type(test_command) == "string" and test_command ~= "" then
    arguments.testCommand = test_command
  end
  local params = { command = "quill.repair", arguments = { arguments } }
  local leave
  local ok, request_id = client:request("workspace/executeCommand", params, function(err, result)
    pcall(vim.api.nvim_del_autocmd, leave)
    if callback then
      callback(err and (err.message or vim.inspect(err)) or nil, result)
      return
    end
    if err then
      vim.notify("quill: " .. (err.message or vim.inspect(err)), vim.log.levels.WARN)
      return
    end
    if result.cancelled or #result.candidates == 0 then
      vim.notify("quill: " .. result.message, vim.log.levels.INFO)
      return
    end
    vim.ui.select(result.candidates, {
      prompt = result.message,
      format_item = function(candidate)
        return candidate.title
      end,
    }, function(choice)
      if choice then
        vim.lsp.util.apply_workspace_edit(choice.edit, client.offset_encoding)
      end
    end)
  end, bufnr)
  if ok and request_id then
    leave = vim.api.nvim_create_autocmd("BufLeave", {
      buffer = bufnr,
      once = true,
      callback = function()
        client:cancel_request(request_id)
      end,
    })
  end
end

--- Searches the API catalog (workspace definitions, imported packages, standard library) with
--- {query}, lets the user pick an entry with vim.ui.select and inserts its call at the cursor
--- (required parameters as snippet placeholders). With {callback}, callback(err, items) gets
--- the server's items instead of the picker.
function M.search_api(query, callback)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.clients(bufnr)[1] or M.clients()[1]
  if not client then
    vim.notify("quill: no quill language server is running", vim.log.levels.WARN)
    return
  end
  local params = { command = "quill.searchApi", arguments = { { query = query } } }
  client:request("workspace/executeCommand", params, function(err, result)
    if callback then
      callback(err and (err.message or vim.inspect(err)) or nil, result and result.items)
      return
    end
    if err then
      vim.notify("quill: " .. (err.message or vim.inspect(err)), vim.log.levels.WARN)
      return
    end
    if #result.items == 0 then
      vim.notify("quill: no API found for " .. query, vim.log.levels.INFO)
      return
    end
    vim.ui.select(result.items, {
      prompt = "APIs for " .. query,
      format_item = function(item)
        local where = item.path ~= "" and (item.path .. ":" .. item.line) or item.source
        return string.format("%s  %s  [%s]", item.qualifiedName, item.signature, where)
      end,
    }, function(choice)
      if choice then
        vim.snippet.expand(choice.snippet)
      end
    end)
  end, bufnr)
end

local function set_keymaps(bufnr, ic, keymaps)
  if keymaps.accept then
    vim.keymap.set("i", keymaps.accept, function()
      if not ic.get({ bufnr = bufnr }) then
        return vim.keycode(keymaps.accept)
      end
      return ""
    end, {
      buffer = bufnr,
      expr = true,
      replace_keycodes = false,
      desc = "Quill: accept the suggestion",
    })
  end
  if keymaps.next then
    vim.keymap.set("i", keymaps.next, function()
      ic.select({ bufnr = bufnr, count = 1 })
    end, { buffer = bufnr, desc = "Quill: next suggestion" })
  end
  if keymaps.prev then
    vim.keymap.set("i", keymaps.prev, function()
      ic.select({ bufnr = bufnr, count = -1 })
    end, { buffer = bufnr, desc = "Quill: previous suggestion" })
  end
end

--- A server that dies (bad command, crash) is reported once and not restarted for every
--- buffer opened afterwards: Quill is disabled for the rest of the session.
local function on_exit(code, signal)
  if code == 0 and (signal == 0 or signal == 15) then
    return
  end
  M.exited_cmd = M.config and M.config.cmd
  vim.schedule(function()
    pcall(vim.lsp.enable, M.name, false)
    notify_once(
      "exit",
      string.format(
        "the language server exited (code %s, signal %s); Quill is off for this session. "
          .. "Check the command with :checkhealth quill",
        tostring(code),
        tostring(signal)
      ),
      vim.log.levels.ERROR
    )
  end)
end

function M.setup(opts)
  local ic, why = native_api()
  if not ic then
    M.setup_error = why
    notify_once(
      "version",
      string.format(
        "needs Neovim 0.12 or newer (this is %s: %s); Quill is not started",
        version_string(),
        why
      )
    )
    return M
  end

  local config = merge(opts)
  if M.exited_cmd ~= nil and vim.deep_equal(M.exited_cmd, config.cmd) then
    -- The same command already died this session (reported once); do not start it again.
    return M
  end
  M.config = config
  M.setup_error = nil

  if type(config.cmd) == "table" then
    local exe = config.cmd[1]
    if type(exe) ~= "string" or vim.fn.executable(exe) ~= 1 then
      M.setup_error = string.format("language server command not found: %s", tostring(exe))
      notify_once(
        "cmd",
        M.setup_error
          .. " (install Quill or pass cmd to require('quill').setup; :checkhealth quill)"
      )
      return M
    end
  end

  vim.lsp.config(M.name, {
    cmd = config.cmd,
    filetypes = config.filetypes,
    root_markers = config.root_markers,
    init_options = M.init_options(config),
    on_exit = on_exit,
    -- Declares that this client takes M.REFRESH (LSP has no inline-completion refresh).
    capabilities = { experimental = { inlineCompletionRefreshSupport = true } },
    handlers = { [M.REFRESH] = M.on_refresh },
  })

  local group = vim.api.nvim_create_augroup("quill", { clear = true })
  vim.api.nvim_create_autocmd("LspAttach", {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data and args.data.client_id)
      if client and client.name == M.name then
        set_keymaps(args.buf, ic, config.keymaps or {})
      end
    end,
  })

  vim.api.nvim_create_user_command("QuillStats", show_stats, {
    desc = "Quill: suggestions shown and accepted in this session",
    force = true,
  })
  vim.api.nvim_create_user_command("QuillSearchApi", function(command)
    local query = command.args
    if query == "" then
      vim.ui.input({ prompt = "Search APIs: " }, function(input)
        if input and input ~= "" then
          M.search_api(input)
        end
      end)
    else
      M.search_api(query)
    end
  end, {
    desc = "Quill: search APIs and insert the chosen call",
    nargs = "*",
    force = true,
  })
  vim.api.nvim_create_user_command("QuillRepair", function(command)
    M.repair(command.line1, command.line2)
  end, {
    desc = "Quill: candidate patches for the line (or the range), then pick one",
    range = true,
    force = true,
  })

  if config.inline_completion then
    ic.enable(true)
  end
  vim.lsp.enable(M.name)
  return M
end

return M
