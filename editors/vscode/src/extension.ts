import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';
import {
  CloseAction,
  DocumentSelector,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  Middleware,
  ServerOptions,
  ShowMessageNotification,
  State,
} from 'vscode-languageclient/node';
import {
  classifyServerMessage,
  Debouncer,
  formatStats,
  INLINE_COMPLETION_REFRESH,
  INLINE_COMPLETION_REFRESH_CAPABILITY,
  initializationOptions,
  isLanguageEnabled,
  parseSettings,
  QuillSettings,
  refreshesActiveEditor,
  RESTART_KEYS,
  RestartPolicy,
  selectorLanguages,
  StatusEvent,
  StatusModel,
} from './logic';
import {
  candidatePicks,
  parseRepairResult,
  parseRepairSettings,
  REPAIR_LINE_COMMAND,
  REPAIR_RESTART_KEYS,
  repairInitializationOptions,
  repairLineArguments,
  RepairSettings,
} from './repair';
import { apiPicks, parseApiSearchResult, SEARCH_API_COMMAND } from './apiSearch';

const STATS_COMMAND = 'quill.stats';
const DID_SHOW = 'textDocument/didShowCompletion';
/** Tests only: `quill.showStats` also writes the stats JSON to this file. */
const STATS_FILE_ENV = 'QUILL_VSCODE_STATS_FILE';

/**
 * The language client refuses to stay quiet on start failures ('force' notifications); route
 * every such error to one place so the user sees one clear message per failure, not a storm.
 */
class QuillLanguageClient extends LanguageClient {
  onFatal: ((message: string) => void) | undefined;

  override error(message: string, data?: unknown, showNotification: boolean | 'force' = true): void {
    super.error(message, data, false);
    if (showNotification === 'force') {
      this.onFatal?.(message);
    }
  }
}

let client: QuillLanguageClient | undefined;
let settings: QuillSettings;
let repairSettings: RepairSettings;
let status: StatusModel;
let statusItem: vscode.StatusBarItem;
let output: vscode.LogOutputChannel;
let restartPolicy: RestartPolicy;
let failureShown = false;
const debouncer = new Debouncer(() => settings.debounceMs);

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('Quill', { log: true });
  status = new StatusModel();
  restartPolicy = new RestartPolicy();
  statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  statusItem.name = 'Quill';
  statusItem.command = 'quill.showStats';
  context.subscriptions.push(output, statusItem);
  settings = readSettings();

  context.subscriptions.push(
    vscode.commands.registerCommand('quill.showStats', showStats),
    // Not `quill.repairLine`: the language client registers the server's commands under their
    // own names (that one serves the server's code actions).
    vscode.commands.registerCommand('quill.repairLineAtCursor', repairLineAtCursor),
    vscode.commands.registerCommand('quill.searchApiAtCursor', searchApiAtCursor),
    vscode.commands.registerCommand('quill.restartServer', async () => {
      failureShown = false;
      restartPolicy.reset();
      await restartClient();
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (!event.affectsConfiguration('quill')) {
        return;
      }
      settings = readSettings();
      const restartKeys = [...RESTART_KEYS, ...REPAIR_RESTART_KEYS];
      if (restartKeys.some((key) => event.affectsConfiguration(`quill.${key}`))) {
        failureShown = false;
        restartPolicy.reset();
        await restartClient();
      }
    }),
  );
  await startClient();
}

export function deactivate(): Thenable<void> | undefined {
  debouncer.supersede();
  const current = client;
  client = undefined;
  return current?.stop();
}

function readSettings(): QuillSettings {
  const config = vscode.workspace.getConfiguration('quill');
  const { settings: parsed, problems } = parseSettings((key) => config.get(key));
  const repair = parseRepairSettings((key) => config.get(key));
  repairSettings = repair.settings;
  problems.push(...repair.problems);
  if (problems.length > 0) {
    void vscode.window.showWarningMessage(`Quill settings: ${problems.join('; ')} (defaults used).`);
  }
  return parsed;
}

function updateStatus(event?: StatusEvent): void {
  if (event !== undefined) {
    status.apply(event);
  }
  const view = status.view();
  statusItem.text = view.text;
  statusItem.tooltip = `${view.tooltip}\nClick for stats.`;
  statusItem.backgroundColor = view.warning
    ? new vscode.ThemeColor('statusBarItem.warningBackground')
    : undefined;
  statusItem.show();
}

/** One clear message per failure (reset when the server runs again or settings change). */
function reportFailure(message: string): void {
  updateStatus({ kind: 'failed', detail: message });
  output.appendLine(`[error] ${message}`);
  if (failureShown) {
    return;
  }
  failureShown = true;
  void vscode.window
    .showErrorMessage(`Quill: ${message}`, 'Open Settings', 'Show Output', 'Restart')
    .then((choice) => {
      if (choice === 'Open Settings') {
        void vscode.commands.executeCommand('workbench.action.openSettings', 'quill.server');
      } else if (choice === 'Show Output') {
        output.show();
      } else if (choice === 'Restart') {
        void vscode.commands.executeCommand('quill.restartServer');
      }
    });
}

/** The program of the command, resolved on PATH; undefined when it cannot be run. */
function findProgram(program: string): string | undefined {
  const candidates = program.includes('/')
    ? [path.resolve(program)]
    : (process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, program));
  for (const candidate of candidates) {
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) {
        return candidate;
      }
    } catch {
      // not this one
    }
  }
  return undefined;
}

function documentSelector(): DocumentSelector {
  const languages = selectorLanguages(settings.enable);
  const schemes = ['file', 'untitled'];
  if (languages === undefined) {
    return schemes.map((scheme) => ({ scheme }));
  }
  return languages.flatMap((language) => schemes.map((scheme) => ({ scheme, language })));
}

function middleware(): Middleware {
  return {
    provideInlineCompletionItems: async (document, position, context, token, next) => {
      if (!isLanguageEnabled(settings.enable, document.languageId)) {
        return null;
      }
      if (!(await debouncer.wait(token))) {
        return null;
      }
      updateStatus({ kind: 'requestStarted' });
      try {
        const result = await next(document, position, context, token);
        const items = Array.isArray(result) ? result : (result?.items ?? []);
        if (items.length > 0 && !token.isCancellationRequested) {
          notifyShown(items[0]);
        }
        return result;
      } finally {
        updateStatus({ kind: 'requestFinished' });
      }
    },
  };
}

/**
 * Copilot-style `textDocument/didShowCompletion` for the item VS Code is about to show (the
 * stable API has no "shown" callback: this is sent when the first item is handed to the editor).
 */
function notifyShown(item: vscode.InlineCompletionItem): void {
  const current = client;
  if (current === undefined || !current.isRunning()) {
    return;
  }
  const command = item.command;
  if (command === undefined || !('command' in command)) {
    return;
  }
  const insertText = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
  const wireItem = {
    insertText,
    command: { title: command.title, command: command.command, arguments: command.arguments ?? [] },
  };
  current.sendNotification(DID_SHOW, { item: wireItem }).catch((error: unknown) => {
    output.appendLine(`[warn] ${DID_SHOW} failed: ${String(error)}`);
  });
}

async function startClient(): Promise<void> {
  updateStatus({ kind: 'starting' });
  const [program, ...args] = settings.serverCommand;
  const resolved = findProgram(program);
  if (resolved === undefined) {
    reportFailure(
      `cannot start the language server: "${program}" was not found or is not executable. ` +
        'Install Quill (pip install quill) or set "quill.server.command".',
    );
    return;
  }
  const serverOptions: ServerOptions = {
    command: resolved,
    args,
    options: { env: process.env },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: documentSelector(),
    initializationOptions: {
      ...initializationOptions(settings),
      ...repairInitializationOptions(repairSettings),
    },
    outputChannel: output,
    middleware: middleware(),
    initializationFailedHandler: (error) => {
      reportFailure(
        `the language server failed to start (it exited or did not answer initialize; see Output > Quill): ${String(error)}`,
      );
      return false;
    },
    errorHandler: {
      error: (_error, _message, count) => ({
        action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
        handled: true,
      }),
      closed: () => {
        if (restartPolicy.shouldRestart(Date.now())) {
          output.appendLine('[warn] the language server exited; restarting it');
          return { action: CloseAction.Restart, handled: true };
        }
        reportFailure(
          'the language server keeps exiting (3 times in 3 minutes); it is not restarted. ' +
            'See Output > Quill, then run "Quill: Restart Language Server".',
        );
        return { action: CloseAction.DoNotRestart, handled: true };
      },
    },
  };
  const created = new QuillLanguageClient('quill', 'Quill', serverOptions, clientOptions);
  created.onFatal = (message) => { reportFailure(message); };
  created.onDidChangeState((event) => {
    if (event.newState === State.Running) {
      failureShown = false;
      updateStatus({ kind: 'running' });
    } else if (event.newState === State.Stopped) {
      updateStatus({ kind: 'stopped' });
    }
  });
  // Registered before start, this replaces the client's default handler (also after restarts): it updates the status bar, then shows the
  // message as the default handler would.
  created.onNotification(ShowMessageNotification.type, (params) => {
    const event = classifyServerMessage(params.message);
    if (event !== undefined) {
      updateStatus(event);
    }
    output.appendLine(`[server] ${params.message}`);
    switch (params.type) {
      case 1:
        void vscode.window.showErrorMessage(params.message);
        break;
      case 2:
        void vscode.window.showWarningMessage(params.message);
        break;
      default:
        void vscode.window.showInformationMessage(params.message);
    }
  });
  // A streamed block on screen grew: ask again, so the editor shows its new lines.
  created.registerFeature({
    fillClientCapabilities: (capabilities) => {
      capabilities.experimental = {
        ...(capabilities.experimental as object | undefined),
        [INLINE_COMPLETION_REFRESH_CAPABILITY]: true,
      };
    },
    initialize: () => undefined,
    getState: () => ({ kind: 'static' }),
    clear: () => undefined,
  });
  created.onNotification(INLINE_COMPLETION_REFRESH, (params: unknown) => {
    if (refreshesActiveEditor(params, vscode.window.activeTextEditor?.document.uri.toString())) {
      void vscode.commands.executeCommand('editor.action.inlineSuggest.trigger');
    }
  });
  client = created;
  try {
    await created.start();
  } catch (error) {
    reportFailure(`the language server did not start: ${String(error)}`);
    return;
  }
}

async function restartClient(): Promise<void> {
  const previous = client;
  client = undefined;
  if (previous !== undefined) {
    try {
      await previous.stop();
    } catch (error) {
      output.appendLine(`[warn] stopping the language server failed: ${String(error)}`);
    }
  }
  await startClient();
}

async function showStats(): Promise<void> {
  const current = client;
  if (current === undefined || !current.isRunning()) {
    void vscode.window.showWarningMessage('Quill: the language server is not running.');
    return;
  }
  let stats: Record<string, unknown>;
  try {
    stats = (await current.sendRequest(ExecuteCommandRequest.type, {
      command: STATS_COMMAND,
      arguments: [],
    })) as Record<string, unknown>;
  } catch (error) {
    void vscode.window.showErrorMessage(`Quill: stats failed: ${String(error)}`);
    return;
  }
  updateStatus({ kind: 'stats', servingAvailable: stats.servingAvailable === true });
  const statsFile = process.env[STATS_FILE_ENV];
  if (statsFile) {
    fs.writeFileSync(statsFile, JSON.stringify(stats));
  }
  void vscode.window.showInformationMessage(formatStats(stats));
}

/**
 * "Quill: Repair line": the server repairs the cursor's line (showing its own progress with a
 * cancel button); the user picks one of the ranked candidates, whose edit is then applied.
 * Switching to another editor cancels the request, and with it the decoding.
 */
async function repairLineAtCursor(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  const current = client;
  if (editor === undefined) {
    void vscode.window.showWarningMessage('Quill: open a file and put the cursor on a line to repair.');
    return;
  }
  if (current === undefined || !current.isRunning()) {
    void vscode.window.showWarningMessage('Quill: the language server is not running.');
    return;
  }
  const source = new vscode.CancellationTokenSource();
  const movedOn = vscode.window.onDidChangeActiveTextEditor(() => { source.cancel(); });
  try {
    const raw: unknown = await current.sendRequest(
      ExecuteCommandRequest.type,
      {
        command: REPAIR_LINE_COMMAND,
        arguments: repairLineArguments(
          editor.document.uri.toString(),
          editor.selection.active.line,
          repairSettings.testCommand,
        ),
      },
      source.token,
    );
    const result = parseRepairResult(raw);
    if (result.cancelled || result.candidates.length === 0) {
      void vscode.window.showInformationMessage(result.message);
      return;
    }
    const pick = await vscode.window.showQuickPick(candidatePicks(result), {
      title: result.message,
      placeHolder: 'Pick a patch to apply (Esc: keep the line as it is)',
      matchOnDetail: true,
    });
    if (pick === undefined) {
      return;
    }
    const edit = await current.protocol2CodeConverter.asWorkspaceEdit(
      pick.candidate.edit as Parameters<typeof current.protocol2CodeConverter.asWorkspaceEdit>[0],
    );
    if (edit === undefined || !(await vscode.workspace.applyEdit(edit))) {
      void vscode.window.showWarningMessage('Quill: the file changed since the repair; run it again.');
    }
  } catch (error) {
    if (!source.token.isCancellationRequested) {
      void vscode.window.showErrorMessage(`Quill: ${error instanceof Error ? error.message : String(error)}`);
    }
  } finally {
    movedOn.dispose();
    source.dispose();
  }
}

/** Ask for a query, search the API catalog in the language server, insert the pick's snippet. */
async function searchApiAtCursor(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  const current = client;
  if (current === undefined || !current.isRunning()) {
    void vscode.window.showWarningMessage('Quill: the language server is not running.');
    return;
  }
  const query = await vscode.window.showInputBox({
    prompt: 'Search APIs (workspace, packages, standard library)',
    placeHolder: 'read a csv file, from_fi, json.lo...',
  });
  if (!query) {
    return;
  }
  try {
    const raw: unknown = await current.sendRequest(ExecuteCommandRequest.type, {
      command: SEARCH_API_COMMAND,
      arguments: [{ query }],
    });
    const pick = await vscode.window.showQuickPick(apiPicks(parseApiSearchResult(raw)), {
      title: `Quill: APIs for "${query}"`,
      matchOnDescription: true,
      matchOnDetail: true,
    });
    if (pick !== undefined && editor !== undefined) {
      await editor.insertSnippet(new vscode.SnippetString(pick.item.snippet));
    }
  } catch (error) {
    void vscode.window.showErrorMessage(`Quill: ${error instanceof Error ? error.message : String(error)}`);
  }
}
