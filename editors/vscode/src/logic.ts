/**
 * The extension's pure logic: settings, per-language enablement, debounce, status and the
 * classification of the server's messages. Nothing here imports `vscode`, so `npm test` runs it
 * under plain node.
 */

export type CompletionMode = 'auto' | 'single' | 'multi';
export const COMPLETION_MODES: readonly CompletionMode[] = ['auto', 'single', 'multi'];
export type TraceLevel = 'off' | 'messages' | 'verbose';

export interface QuillSettings {
  /** Program and arguments that start `quill lsp` over stdio. */
  serverCommand: string[];
  /** host:port of `quill serve`; empty means the server's default. */
  serverAddress: string;
  /** Connection to serving: token, token file, TLS and mutual TLS (docs/security.md). */
  connection: ServingConnection;
  debounceMs: number;
  completionMode: CompletionMode;
  maxTokens: number;
  requestTimeoutS: number;
  /** Language id -> enabled; `*` is the default for languages not listed. */
  enable: Record<string, boolean>;
  trace: TraceLevel;
}

/** Passed through as the language server's `serving*` settings; empty strings are not sent. */
export interface ServingConnection {
  token: string;
  tokenFile: string;
  tls: boolean;
  caFile: string;
  clientCert: string;
  clientKey: string;
}

/** Setting key under `quill.` -> the language server's initializationOptions key. */
const CONNECTION_KEYS: Record<keyof ServingConnection, [string, string]> = {
  token: ['server.token', 'servingToken'],
  tokenFile: ['server.tokenFile', 'servingTokenFile'],
  tls: ['server.tls', 'servingTls'],
  caFile: ['server.caFile', 'servingCaFile'],
  clientCert: ['server.clientCert', 'servingClientCert'],
  clientKey: ['server.clientKey', 'servingClientKey'],
};

export const DEFAULTS: QuillSettings = {
  serverCommand: ['quill', 'lsp'],
  serverAddress: '',
  connection: { token: '', tokenFile: '', tls: false, caFile: '', clientCert: '', clientKey: '' },
  debounceMs: 75,
  completionMode: 'auto',
  maxTokens: 0,
  requestTimeoutS: 10,
  enable: { '*': true, plaintext: false, markdown: false, scminput: false },
  trace: 'off',
};

/** Reads one raw setting value by its key under `quill.` (e.g. `server.command`). */
export type SettingReader = (key: string) => unknown;

/** Settings from raw values; a bad value keeps its default and is listed in `problems`. */
export function parseSettings(read: SettingReader): { settings: QuillSettings; problems: string[] } {
  const problems: string[] = [];
  const settings: QuillSettings = {
    ...DEFAULTS,
    enable: { ...DEFAULTS.enable },
    connection: readConnection(read, problems),
  };

  const command = read('server.command');
  if (command !== undefined && command !== null) {
    if (typeof command === 'string' && command.trim() !== '') {
      // A plain string is accepted as a program without arguments.
      settings.serverCommand = [command.trim()];
    } else if (
      Array.isArray(command) &&
      command.length > 0 &&
      command.every((part) => typeof part === 'string') &&
      (command[0]).trim() !== ''
    ) {
      settings.serverCommand = command;
    } else {
      problems.push('quill.server.command must be a non-empty array of strings');
    }
  }

  const address = read('server.address');
  if (address !== undefined && address !== null && address !== '') {
    if (typeof address === 'string' && /^[\w.\-[\]:]+:\d+$/.test(address.trim())) {
      settings.serverAddress = address.trim();
    } else {
      problems.push(`quill.server.address must be host:port, got ${JSON.stringify(address)}`);
    }
  }

  settings.debounceMs = readNumber(read, 'debounceMs', DEFAULTS.debounceMs, 0, 5000, problems);
  settings.maxTokens = Math.floor(
    readNumber(read, 'maxTokens', DEFAULTS.maxTokens, 0, 100000, problems),
  );
  settings.requestTimeoutS = readNumber(
    read,
    'requestTimeoutS',
    DEFAULTS.requestTimeoutS,
    0.001,
    3600,
    problems,
  );

  const mode = read('completionMode');
  if (mode !== undefined && mode !== null) {
    if (typeof mode === 'string' && (COMPLETION_MODES as readonly string[]).includes(mode)) {
      settings.completionMode = mode as CompletionMode;
    } else {
      problems.push(`quill.completionMode must be one of ${COMPLETION_MODES.join(', ')}`);
    }
  }

  const enable = read('enable');
  if (enable !== undefined && enable !== null) {
    if (typeof enable === 'boolean') {
      settings.enable = { '*': enable };
    } else if (typeof enable === 'object' && !Array.isArray(enable)) {
      const parsed: Record<string, boolean> = {};
      for (const [language, value] of Object.entries(enable as Record<string, unknown>)) {
        if (typeof value === 'boolean') {
          parsed[language] = value;
        } else {
          problems.push(`quill.enable.${language} must be true or false`);
        }
      }
      settings.enable = parsed;
    } else {
      problems.push('quill.enable must be an object of language id -> boolean');
    }
  }

  const trace = read('trace.server');
  if (trace !== undefined && trace !== null) {
    if (trace === 'off' || trace === 'messages' || trace === 'verbose') {
      settings.trace = trace;
    } else {
      problems.push('quill.trace.server must be off, messages or verbose');
    }
  }
  return { settings, problems };
}

function readConnection(read: SettingReader, problems: string[]): ServingConnection {
  const connection: ServingConnection = { ...DEFAULTS.connection };
  for (const [field, [key]] of Object.entries(CONNECTION_KEYS) as [
    keyof ServingConnection,
    [string, string],
  ][]) {
    const value = read(key);
    if (value === undefined || value === null) {
      continue;
    }
    const fallback = DEFAULTS.connection[field];
    if (typeof value !== typeof fallback) {
      problems.push(`quill.${key} must be a ${typeof fallback}`);
    } else if (typeof value === 'string') {
      (connection[field] as string) = value.trim();
    } else {
      (connection[field] as boolean) = value as boolean;
    }
  }
  return connection;
}

function readNumber(
  read: SettingReader,
  key: string,
  fallback: number,
  min: number,
  max: number,
  problems: string[],
): number {
  const value = read(key);
  if (value === undefined || value === null) {
    return fallback;
  }
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    problems.push(`quill.${key} must be a number between ${min} and ${max}`);
    return fallback;
  }
  return value;
}

/** Whether completions are on for a language id (`*` is the default, on when absent). */
export function isLanguageEnabled(enable: Record<string, boolean>, languageId: string): boolean {
  if (Object.prototype.hasOwnProperty.call(enable, languageId)) {
    return enable[languageId];
  }
  return enable['*'] ?? true;
}

/**
 * Document selector languages: undefined means "every language" (the default is on, and disabled
 * ones are filtered in middleware); otherwise only the languages explicitly enabled.
 */
export function selectorLanguages(enable: Record<string, boolean>): string[] | undefined {
  if (enable['*'] ?? true) {
    return undefined;
  }
  return Object.keys(enable)
    .filter((language) => language !== '*' && enable[language])
    .sort();
}

/** `initializationOptions` for `quill lsp` (camelCase, as lsp_server/settings.py reads them). */
export function initializationOptions(settings: QuillSettings): Record<string, unknown> {
  const options: Record<string, unknown> = {
    completionMode: settings.completionMode,
    maxTokens: settings.maxTokens,
    requestTimeoutS: settings.requestTimeoutS,
  };
  if (settings.serverAddress !== '') {
    options.servingAddress = settings.serverAddress;
  }
  for (const [field, [, option]] of Object.entries(CONNECTION_KEYS) as [
    keyof ServingConnection,
    [string, string],
  ][]) {
    const value = settings.connection[field];
    if (value !== '' && value !== false) {
      options[option] = value;
    }
  }
  return options;
}

/** Keys whose change needs a new language server (everything else is read live). */
export const RESTART_KEYS = [
  'server.command',
  'server.address',
  ...Object.values(CONNECTION_KEYS).map(([key]) => key),
  'completionMode',
  'maxTokens',
  'requestTimeoutS',
  'enable',
];

/** A cancellation signal shaped like vscode.CancellationToken. */
export interface CancelSignal {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): { dispose(): void };
}

/**
 * Debounce for completion requests: `wait()` resolves true after `delayMs` unless a newer call
 * started meanwhile or the request was cancelled (then false, at once).
 */
export class Debouncer {
  private generation = 0;
  private pending: { timer: ReturnType<typeof setTimeout>; resolve: (go: boolean) => void } | undefined;

  constructor(private readonly delayMs: () => number) {}

  wait(token?: CancelSignal): Promise<boolean> {
    this.supersede();
    const generation = ++this.generation;
    const delay = Math.max(0, this.delayMs());
    if (token?.isCancellationRequested) {
      return Promise.resolve(false);
    }
    return new Promise<boolean>((resolve) => {
      const subscriptions: { dispose(): void }[] = [];
      const finish = (go: boolean): void => {
        subscriptions.forEach((subscription) => {
          subscription.dispose();
        });
        if (this.pending?.resolve === finish) {
          clearTimeout(this.pending.timer);
          this.pending = undefined;
        }
        resolve(go && generation === this.generation && !token?.isCancellationRequested);
      };
      const timer = setTimeout(() => {
        finish(true);
      }, delay);
      this.pending = { timer, resolve: finish };
      if (token !== undefined) {
        subscriptions.push(
          token.onCancellationRequested(() => {
            finish(false);
          }),
        );
      }
    });
  }

  /** Resolves the waiting call (if any) with false. */
  supersede(): void {
    const pending = this.pending;
    if (pending !== undefined) {
      this.pending = undefined;
      clearTimeout(pending.timer);
      pending.resolve(false);
    }
  }
}

export type StatusState = 'starting' | 'connected' | 'generating' | 'unreachable' | 'stopped' | 'error';

export type StatusEvent =
  | { kind: 'starting' }
  | { kind: 'running' }
  | { kind: 'requestStarted' }
  | { kind: 'requestFinished' }
  | { kind: 'servingUnavailable'; detail?: string }
  | { kind: 'servingAvailable' }
  | { kind: 'stats'; servingAvailable: boolean }
  | { kind: 'stopped' }
  | { kind: 'failed'; detail?: string };

export interface StatusView {
  text: string;
  tooltip: string;
  /** True when the status bar should use the warning/error background. */
  warning: boolean;
}

/** What the status bar shows, from the client's and the server's events. */
export class StatusModel {
  private phase: 'starting' | 'running' | 'stopped' | 'failed' = 'starting';
  private servingUp = true;
  private inFlight = 0;
  private detail = '';

  apply(event: StatusEvent): StatusState {
    switch (event.kind) {
      case 'starting':
        this.phase = 'starting';
        this.inFlight = 0;
        break;
      case 'running':
        this.phase = 'running';
        break;
      case 'requestStarted':
        this.inFlight += 1;
        break;
      case 'requestFinished':
        this.inFlight = Math.max(0, this.inFlight - 1);
        break;
      case 'servingUnavailable':
        this.servingUp = false;
        this.detail = event.detail ?? '';
        break;
      case 'servingAvailable':
        this.servingUp = true;
        this.detail = '';
        break;
      case 'stats':
        this.servingUp = event.servingAvailable;
        break;
      case 'stopped':
        if (this.phase !== 'failed') {
          this.phase = 'stopped';
        }
        this.inFlight = 0;
        break;
      case 'failed':
        this.phase = 'failed';
        this.inFlight = 0;
        this.detail = event.detail ?? '';
        break;
    }
    return this.state;
  }

  get state(): StatusState {
    switch (this.phase) {
      case 'failed':
        return 'error';
      case 'starting':
      case 'stopped':
        return this.phase;
      case 'running':
        if (!this.servingUp) {
          return 'unreachable';
        }
        return this.inFlight > 0 ? 'generating' : 'connected';
    }
  }

  view(): StatusView {
    switch (this.state) {
      case 'starting':
        return { text: '$(loading~spin) Quill', tooltip: 'Quill: starting the language server', warning: false };
      case 'connected':
        return { text: '$(check) Quill', tooltip: 'Quill: connected', warning: false };
      case 'generating':
        return { text: '$(sync~spin) Quill', tooltip: 'Quill: generating a suggestion', warning: false };
      case 'unreachable':
        return {
          text: '$(warning) Quill',
          tooltip: `Quill: serving unreachable${this.detail ? ` (${this.detail})` : ''}`,
          warning: true,
        };
      case 'stopped':
        return { text: '$(circle-slash) Quill', tooltip: 'Quill: language server stopped', warning: true };
      case 'error':
        return {
          text: '$(error) Quill',
          tooltip: `Quill: language server failed${this.detail ? `: ${this.detail}` : ''}`,
          warning: true,
        };
    }
  }
}

/** How a window/showMessage from `quill lsp` changes serving's status (see serving_client.py). */
export function classifyServerMessage(message: string): StatusEvent | undefined {
  const down = /serving at \S+ is unavailable(?: \(([^)]*)\))?/.exec(message);
  if (down) {
    return { kind: 'servingUnavailable', detail: down[1] };
  }
  if (/connected to serving at /.test(message)) {
    return { kind: 'servingAvailable' };
  }
  return undefined;
}

/**
 * Restart policy of the language server: at most `maxRestarts` restarts within `windowMs`;
 * after that the server stays down and the user is told once.
 */
export class RestartPolicy {
  private restarts: number[] = [];

  constructor(
    private readonly maxRestarts = 3,
    private readonly windowMs = 3 * 60 * 1000,
  ) {}

  /** Records a crash at `now`; true when the server may be restarted. */
  shouldRestart(now: number): boolean {
    this.restarts = this.restarts.filter((time) => now - time < this.windowMs);
    if (this.restarts.length >= this.maxRestarts) {
      return false;
    }
    this.restarts.push(now);
    return true;
  }

  reset(): void {
    this.restarts = [];
  }
}

/** Formats quill.stats for a message. */
export function formatStats(stats: Record<string, unknown>): string {
  const shown = Number(stats.shown ?? 0);
  const accepted = Number(stats.accepted ?? 0);
  const chars = Number(stats.acceptedChars ?? 0);
  const rate = shown > 0 ? ` (${Math.round((100 * accepted) / shown)}%)` : '';
  const serving = stats.servingAvailable === true ? 'reachable' : 'unreachable';
  return `Quill: ${shown} shown, ${accepted} accepted${rate}, ${chars} characters accepted; serving ${serving}.`;
}

/**
 * The server's notification that the suggestion shown for a document grew (a streamed block's
 * next lines); LSP has no inline-completion refresh, so the client opts in with this
 * experimental capability.
 */
export const INLINE_COMPLETION_REFRESH = 'quill/inlineCompletionRefresh';
export const INLINE_COMPLETION_REFRESH_CAPABILITY = 'inlineCompletionRefreshSupport';

/** Whether a refresh (its params as received) is for the document in the active editor. */
export function refreshesActiveEditor(params: unknown, activeUri: string | undefined): boolean {
  if (activeUri === undefined || typeof params !== 'object' || params === null) {
    return false;
  }
  const document = (params as { textDocument?: { uri?: unknown } }).textDocument;
  return typeof document?.uri === 'string' && document.uri === activeUri;
}
