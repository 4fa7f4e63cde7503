-- :checkhealth quill

local M = {}

function M.check()
  local health = vim.health
  local quill = require("quill")

  health.start("Neovim")
  local v = vim.version()
  local version = string.format("%d.%d.%d", v.major, v.minor, v.patch)
  if vim.fn.has("nvim-0.12") == 1 then
    health.ok("Neovim " .. version)
  else
    health.error("Neovim " .. version .. " is too old", { "Quill needs Neovim 0.12 or newer" })
  end
  local ok_ic = pcall(require, "vim.lsp.inline_completion")
  if ok_ic then
    health.ok("vim.lsp.inline_completion is available")
  else
    health.error("vim.lsp.inline_completion is missing", { "Quill needs Neovim 0.12 or newer" })
  end

  health.start("Language server command")
  local config = quill.config
  if not config then
    health.warn(
      "require('quill').setup() has not run",
      { "Call require('quill').setup({}) in your config" }
    )
  end
  local cmd = config and config.cmd or { "quill", "lsp" }
  if type(cmd) == "table" then
    local exe = cmd[1]
    local path = type(exe) == "string" and vim.fn.exepath(exe) or ""
    if path ~= "" then
      health.ok(string.format("%s found: %s", table.concat(cmd, " "), path))
    else
      health.error(string.format("%s is not executable", tostring(exe)), {
        "Install Quill (pip install -e /path/to/quill) or pass the full command:",
        "require('quill').setup({ cmd = { '/path/to/venv/bin/quill', 'lsp' } })",
      })
    end
  else
    health.info("cmd is a function; not checked")
  end
  if quill.setup_error then
    health.error("setup() did not start Quill: " .. quill.setup_error)
  end
  if quill.exited_cmd then
    health.error(
      "the language server exited with an error this session; Quill is off",
      { "Run the command in a terminal to see why: " .. table.concat(quill.exited_cmd, " ") }
    )
  end
  if config then
    health.info(
      string.format(
        "serving address: %s; completion mode: %s",
        config.serving_address or "server default (127.0.0.1:50051 or $QUILL_SERVING_ADDRESS)",
        config.completion_mode or "auto"
      )
    )
  end

  health.start("Language server client")
  local clients = quill.clients()
  if #clients == 0 then
    health.warn("no quill client is running", {
      "Open a file of one of these filetypes: "
        .. table.concat((config or quill.defaults).filetypes or {}, ", "),
      "See :LspInfo / :lua =vim.lsp.log.get_filename() for start-up errors",
    })
  end
  for _, client in ipairs(clients) do
    local buffers = vim.tbl_keys(client.attached_buffers or {})
    table.sort(buffers)
    local names = {}
    for _, bufnr in ipairs(buffers) do
      table.insert(names, vim.fn.fnamemodify(vim.api.nvim_buf_get_name(bufnr), ":~:."))
    end
    if #buffers > 0 then
      health.ok(string.format("client %d attached to: %s", client.id, table.concat(names, ", ")))
    else
      health.warn(string.format("client %d is running but attached to no buffer", client.id))
    end
    if client.server_capabilities and client.server_capabilities.inlineCompletionProvider then
      health.ok("the server offers inline completion")
    else
      health.warn("the server does not (yet) advertise inline completion")
    end
    local ok, response = pcall(function()
      return client:request_sync(
        "workspace/executeCommand",
        { command = "quill.stats", arguments = {} },
        2000
      )
    end)
    local result = ok and response and response.result
    if type(result) == "table" then
      local line = string.format(
        "shown %d, accepted %d (%d chars)",
        result.shown or 0,
        result.accepted or 0,
        result.acceptedChars or 0
      )
      if result.servingAvailable then
        health.ok("serving is available; " .. line)
      else
        health.warn("serving is not available (yet); " .. line, {
          "Start it with `quill serve` (or scripts/setup.sh run) and check servingAddress",
        })
      end
    else
      health.warn("quill.stats did not answer")
    end
  end
end

return M
