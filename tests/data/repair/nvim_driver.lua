-- Headless Neovim driver for tests/unit/test_nvim_repair.py: runs :QuillRepair on one line.
--
-- $QUILL_NVIM_PARAMS (JSON): plugin_dir, setup (for require("quill").setup), file, line
-- (1-based), scenario ("pick": choose the first candidate; "leave": leave the buffer once the
-- file `marker` exists, which the test creates when serving has the repair), out (where the
-- observations go as JSON).

local params = vim.json.decode(vim.env.QUILL_NVIM_PARAMS)
vim.opt.runtimepath:prepend(params.plugin_dir)
vim.opt.swapfile = false
local obs = { notifications = {} }

vim.notify = function(msg, level)
  table.insert(obs.notifications, { msg = tostring(msg), level = level or vim.log.levels.INFO })
end

local function finish(err)
  obs.error = err
  local file = assert(io.open(params.out, "w"))
  file:write(vim.json.encode(obs))
  file:close()
  vim.cmd("qa!")
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

local function wait_for(what, cond, timeout)
  local deadline = vim.uv.now() + timeout
  while not cond() do
    if vim.uv.now() > deadline then
      error("timed out waiting for " .. what, 0)
    end
    sleep(20)
  end
end

-- The picker: record what the user would see and choose the first candidate.
vim.ui.select = function(items, opts, on_choice)
  obs.prompt = opts.prompt
  obs.items = vim.tbl_map(opts.format_item, items)
  on_choice(items[1], 1)
end

co = coroutine.create(function()
  require("quill").setup(params.setup)
  vim.cmd.edit(vim.fn.fnameescape(params.file))
  local bufnr = vim.api.nvim_get_current_buf()
  wait_for("the quill client", function()
    local client = require("quill").clients(bufnr)[1]
    return client and client.initialized
  end, 30000)
  vim.api.nvim_win_set_cursor(0, { params.line, 0 })
  local before = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  vim.cmd("QuillRepair")
  if params.scenario == "leave" then
    wait_for("serving to start the repair", function()
      return vim.uv.fs_stat(params.marker) ~= nil
    end, 60000)
    vim.cmd.enew()
    sleep(1500)
  else
    wait_for("the patch", function()
      return not vim.deep_equal(before, vim.api.nvim_buf_get_lines(bufnr, 0, -1, false))
    end, 30000)
  end
  obs.lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  finish(nil)
end)

-- After startup: Neovim turns filetype detection on once this file has been sourced.
vim.schedule(function()
  local ok, err = coroutine.resume(co)
  if not ok then
    finish("coroutine: " .. tostring(err))
  end
end)
