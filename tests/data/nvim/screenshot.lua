-- Interactive (non-headless) Neovim for the screenshot test: the plugin, a Python file, the
-- cursor at the end of its last line in insert mode, so the model's ghost text appears.
-- Parameters as JSON in $QUILL_NVIM_PARAMS: plugin_dir, setup, file.
local params = vim.json.decode(vim.env.QUILL_NVIM_PARAMS)
vim.opt.runtimepath:prepend(params.plugin_dir)
vim.opt.swapfile = false
vim.opt.termguicolors = true
vim.opt.number = true
vim.opt.laststatus = 2
vim.cmd.colorscheme("default")
require("quill").setup(params.setup)
vim.api.nvim_create_autocmd("VimEnter", {
  nested = true,
  callback = function()
    vim.cmd.edit(params.file)
    vim.defer_fn(function()
      vim.cmd("normal! G$")
      vim.cmd("startinsert!")
    end, 1500)
  end,
})
