-- Headless Neovim driver for tests/e2e/test_nvim_e2e.py.
--
-- Parameters come as JSON in $QUILL_NVIM_PARAMS:
--   plugin_dir  editors/nvim (added to 'runtimepath')
--   scenario    "complete" | "block" | "broken" | "old"
--   setup       the table passed to require("quill").setup
--   files       files to open, in order
--   out         where the observations are written as JSON
-- Every step runs in a coroutine resumed from timers, so Neovim's main loop (typeahead, LSP
-- messages, the inline completion debounce) keeps running between steps.

local params = vim.json.decode(vim.env.QUILL_NVIM_PARAMS)
vim.opt.runtimepath:prepend(params.plugin_dir)
vim.opt.swapfile = false
vim.opt.shortmess:append("F")

local obs = { scenario = params.scenario, notifications = {}, steps = {} }

-- Everything shown through vim.notify (the plugin's messages, Neovim's LSP messages and
-- window/showMessage) is recorded as well as shown.
local original_notify = vim.notify
vim.notify = function(msg, level, o)
  table.insert(obs.notifications, { msg = tostring(msg), level = level or vim.log.levels.INFO })
  return original_notify(msg, level, o)
end

local function finish(err)
  obs.error = err
  obs.messages = vim.fn.execute("messages")
  obs.errmsg = vim.v.errmsg
  local ok, encoded = pcall(vim.json.encode, obs)
  if not ok then
    encoded = vim.json.encode({ error = "cannot encode the observations: " .. tostring(encoded) })
  end
  local file = assert(io.open(params.out, "w"))
  file:write(encoded)
  file:close()
  vim.cmd("qa!")
end

local function step(name)
  table.insert(obs.steps, { name = name, t_ms = vim.uv.now() })
end

local co

local function sleep(ms)
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      finish("coroutine: " .. tostring(err))
    end
  end, ms)
  coroutine.yield()
end

--- Polls {cond} every {interval} ms until it returns a truthy value, or fails after {timeout} ms.
local function wait_for(what, cond, timeout, interval)
  local deadline = vim.uv.now() + timeout
  while true do
    local value = cond()
    if value then
      return value
    end
    if vim.uv.now() > deadline then
      error("timed out waiting for " .. what, 0)
    end
    sleep(interval or 20)
  end
end

local function feed(keys)
  vim.api.nvim_feedkeys(vim.keycode(keys), "m", false)
end

local function stats()
  local result, done = nil, false
  require("quill").stats(function(err, r)
    result = err and { error = err } or r
    done = true
  end)
  wait_for("quill.stats", function()
    return done
  end, 10000)
  return result
end

local ns = vim.api.nvim_create_namespace("nvim.lsp.inline_completion")

local function ghost(bufnr)
  local marks = vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })
  local mark = marks[1]
  if not mark then
    return nil
  end
  local details = mark[4]
  local first = {}
  for _, chunk in ipairs(details.virt_text or {}) do
    table.insert(first, chunk[1])
  end
  local lines = { table.concat(first) }
  for _, virt_line in ipairs(details.virt_lines or {}) do
    local parts = {}
    for _, chunk in ipairs(virt_line) do
      table.insert(parts, chunk[1])
    end
    table.insert(lines, table.concat(parts))
  end
  return { row = mark[2], col = mark[3], lines = lines }
end

local function quill_client(bufnr)
  for _, client in ipairs(vim.lsp.get_clients({ name = "quill", bufnr = bufnr })) do
    if client.initialized then
      return client
    end
  end
end

local scenarios = {}

function scenarios.complete()
  require("quill").setup(params.setup)
  vim.cmd.edit(vim.fn.fnameescape(params.files[1]))
  local bufnr = vim.api.nvim_get_current_buf()
  obs.filetype = vim.bo[bufnr].filetype
  wait_for("the quill client to attach", function()
    return quill_client(bufnr)
  end, 30000, 50)
  step("attached")
  obs.inline_completion_enabled = vim.lsp.inline_completion.is_enabled({ bufnr = bufnr })
  local function mapping(lhs)
    local m = vim.fn.maparg(lhs, "i", false, true)
    return { buffer = m.buffer, expr = m.expr, desc = m.desc }
  end
  obs.accept_map = mapping("<Tab>")
  obs.next_map = mapping("<M-]>")
  obs.stats_before = stats()
  obs.lines_before = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)

  -- Append at the end of the last line: InsertEnter, then the 200 ms debounce, then a request.
  local last = vim.api.nvim_buf_line_count(bufnr)
  vim.api.nvim_win_set_cursor(0, { last, 0 })
  feed("A")
  wait_for("insert mode", function()
    return vim.api.nvim_get_mode().mode == "i"
  end, 5000, 10)
  step("insert")
  obs.ghost = wait_for("ghost text", function()
    return ghost(bufnr)
  end, 60000, 20)
  step("ghost")

  -- The cycle mapping re-selects among the items (one here) and shows the index hint.
  feed("<M-]>")
  obs.cycled = wait_for("the cycled ghost text", function()
    local g = ghost(bufnr)
    return g and g.lines[#g.lines]:find("%(1/1%)$") and g
  end, 5000, 10)

  -- Accept through the plugin's <Tab> mapping.
  feed("<Tab>")
  wait_for("the suggestion to be inserted", function()
    return not vim.deep_equal(vim.api.nvim_buf_get_lines(bufnr, 0, -1, false), obs.lines_before)
  end, 10000, 10)
  step("accepted")
  obs.lines_after = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  obs.cursor_after = vim.api.nvim_win_get_cursor(0)
  obs.stats_after = wait_for("the acceptance to be counted", function()
    local s = stats()
    return (s.error or (s.accepted or 0) >= 1) and s
  end, 10000, 50)

  -- With no suggestion shown, <Tab> is a plain <Tab>: open a new line and press it at once,
  -- well inside the 200 ms debounce of the next request.
  feed("<Esc>o")
  wait_for("insert mode on a new line", function()
    return vim.api.nvim_get_mode().mode == "i"
      and vim.api.nvim_win_get_cursor(0)[1] == #obs.lines_after + 1
  end, 5000, 5)
  local row = vim.api.nvim_win_get_cursor(0)[1]
  obs.fallback_before = vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1]
  feed("<Tab>")
  wait_for("the plain <Tab>", function()
    return vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1] ~= obs.fallback_before
  end, 5000, 5)
  obs.fallback_after = vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1]
  feed("<Esc>")
  wait_for("normal mode", function()
    return vim.api.nvim_get_mode().mode == "n"
  end, 5000, 10)
  obs.stats_final = stats()

  -- :QuillStats shows the counters.
  local before = #obs.notifications
  vim.cmd("QuillStats")
  wait_for(":QuillStats output", function()
    return #obs.notifications > before
  end, 10000)
  obs.quill_stats_message = obs.notifications[before + 1].msg

  -- :checkhealth quill
  vim.cmd("checkhealth quill")
  local health_buf = vim.api.nvim_get_current_buf()
  wait_for(":checkhealth quill to finish", function()
    local text = table.concat(vim.api.nvim_buf_get_lines(health_buf, 0, -1, false), "\n")
    return text:find("serving is") or text:find("did not answer") or text:find("no quill client")
  end, 20000, 50)
  obs.health = vim.api.nvim_buf_get_lines(health_buf, 0, -1, false)
end

--- A streamed block: the ghost text first shows one line, then grows to the whole block with no
--- key pressed (the server's refresh makes the plugin ask again).
function scenarios.block()
  require("quill").setup(params.setup)
  vim.cmd.edit(vim.fn.fnameescape(params.files[1]))
  local bufnr = vim.api.nvim_get_current_buf()
  wait_for("the quill client to attach", function()
    return quill_client(bufnr)
  end, 30000, 50)
  vim.api.nvim_win_set_cursor(0, { 1, 0 })
  feed("A")
  obs.first_ghost = wait_for("ghost text", function()
    return ghost(bufnr)
  end, 30000, 10)
  obs.grown_ghost = wait_for("the ghost text to grow", function()
    local g = ghost(bufnr)
    return g and #g.lines > #obs.first_ghost.lines and g
  end, 30000, 10)
  obs.lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  obs.stats = stats()
end

--- A server command that is missing or dies: open every file, type in each, then count.
function scenarios.broken()
  require("quill").setup(params.setup)
  for _, path in ipairs(params.files) do
    vim.cmd.edit(vim.fn.fnameescape(path))
    feed("Ax")
    sleep(600)
    feed("<Esc>")
    sleep(300)
  end
  require("quill").setup(params.setup) -- a second setup() must not repeat the message
  sleep(1000)
  obs.clients = #vim.lsp.get_clients({ name = "quill" })
  obs.setup_error = require("quill").setup_error
end

--- Neovim without vim.lsp.inline_completion (0.11 and older), simulated.
function scenarios.old()
  package.loaded["vim.lsp.inline_completion"] = nil
  package.preload["vim.lsp.inline_completion"] = function()
    error("module 'vim.lsp.inline_completion' not found")
  end
  rawset(vim.lsp, "inline_completion", nil)
  require("quill").setup(params.setup)
  require("quill").setup(params.setup)
  for _, path in ipairs(params.files) do
    vim.cmd.edit(vim.fn.fnameescape(path))
    feed("Ax<Esc>")
    sleep(300)
  end
  sleep(500)
  obs.clients = #vim.lsp.get_clients({ name = "quill" })
  obs.setup_error = require("quill").setup_error
  obs.has_quill_stats = vim.fn.exists(":QuillStats") == 2
end

vim.api.nvim_create_autocmd("VimEnter", {
  nested = true,
  once = true,
  callback = function()
    co = coroutine.create(function()
      local ok, err = xpcall(scenarios[params.scenario], debug.traceback)
      finish(not ok and tostring(err) or vim.NIL)
    end)
    local ok, err = coroutine.resume(co)
    if not ok then
      finish("coroutine: " .. tostring(err))
    end
  end,
})
