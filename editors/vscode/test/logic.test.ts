import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CancelSignal,
  classifyServerMessage,
  Debouncer,
  DEFAULTS,
  formatStats,
  initializationOptions,
  isLanguageEnabled,
  parseSettings,
  refreshesActiveEditor,
  RestartPolicy,
  selectorLanguages,
  StatusModel,
} from '../src/logic';

function reader(values: Record<string, unknown>): (key: string) => unknown {
  return (key) => values[key];
}

class Token implements CancelSignal {
  isCancellationRequested = false;
  private listeners: (() => void)[] = [];
  onCancellationRequested(listener: () => void): { dispose(): void } {
    this.listeners.push(listener);
    return { dispose: () => (this.listeners = this.listeners.filter((l) => l !== listener)) };
  }
  cancel(): void {
    this.isCancellationRequested = true;
    for (const listener of this.listeners) {
      listener();
    }
  }
}

describe('parseSettings', () => {
  it('gives the defaults for no values', () => {
    const { settings, problems } = parseSettings(reader({}));
    assert.deepEqual(settings, DEFAULTS);
    assert.deepEqual(problems, []);
  });

  it('reads valid values', () => {
    const { settings, problems } = parseSettings(
      reader({
        'server.command': ['/usr/bin/python3', '-m', 'quill', 'lsp'],
        'server.address': '10.0.0.2:50051',
        debounceMs: 120,
        completionMode: 'multi',
        maxTokens: 64,
        requestTimeoutS: 2.5,
        enable: { '*': false, python: true },
        'trace.server': 'verbose',
      }),
    );
    assert.deepEqual(problems, []);
    assert.deepEqual(settings.serverCommand, ['/usr/bin/python3', '-m', 'quill', 'lsp']);
    assert.equal(settings.serverAddress, '10.0.0.2:50051');
    assert.equal(settings.debounceMs, 120);
    assert.equal(settings.completionMode, 'multi');
    assert.equal(settings.maxTokens, 64);
    assert.equal(settings.requestTimeoutS, 2.5);
    assert.deepEqual(settings.enable, { '*': false, python: true });
    assert.equal(settings.trace, 'verbose');
  });

  it('accepts a plain string command', () => {
    assert.deepEqual(parseSettings(reader({ 'server.command': 'quill' })).settings.serverCommand, [
      'quill',
    ]);
  });

  it('keeps defaults for bad values and lists each problem', () => {
    const { settings, problems } = parseSettings(
      reader({
        'server.command': [],
        'server.address': 'no port',
        debounceMs: -5,
        completionMode: 'paragraph',
        maxTokens: 'many',
        requestTimeoutS: 0,
        enable: { python: 'yes', rust: true },
        'trace.server': 'loud',
      }),
    );
    assert.deepEqual(settings.serverCommand, DEFAULTS.serverCommand);
    assert.equal(settings.serverAddress, '');
    assert.equal(settings.debounceMs, DEFAULTS.debounceMs);
    assert.equal(settings.completionMode, 'auto');
    assert.equal(settings.maxTokens, 0);
    assert.equal(settings.requestTimeoutS, 10);
    assert.deepEqual(settings.enable, { rust: true });
    assert.equal(settings.trace, 'off');
    assert.equal(problems.length, 8);
  });

  it('rejects a command whose items are not strings', () => {
    const { problems } = parseSettings(reader({ 'server.command': ['quill', 3] }));
    assert.equal(problems.length, 1);
  });
});

describe('enablement per language', () => {
  it('uses the language entry, then *, then on', () => {
    const enable = { '*': true, markdown: false };
    assert.equal(isLanguageEnabled(enable, 'python'), true);
    assert.equal(isLanguageEnabled(enable, 'markdown'), false);
    assert.equal(isLanguageEnabled({}, 'python'), true);
    assert.equal(isLanguageEnabled({ '*': false, python: true }, 'python'), true);
    assert.equal(isLanguageEnabled({ '*': false, python: true }, 'go'), false);
  });

  it('the default disables prose languages only', () => {
    assert.equal(isLanguageEnabled(DEFAULTS.enable, 'typescript'), true);
    assert.equal(isLanguageEnabled(DEFAULTS.enable, 'plaintext'), false);
  });

  it('selects all languages unless * is off', () => {
    assert.equal(selectorLanguages({ '*': true, markdown: false }), undefined);
    assert.equal(selectorLanguages({}), undefined);
    assert.deepEqual(selectorLanguages({ '*': false, rust: true, python: true, go: false }), [
      'python',
      'rust',
    ]);
  });
});

describe('initializationOptions', () => {
  it('sends camelCase keys and the address only when set', () => {
    const options = initializationOptions(DEFAULTS);
    assert.deepEqual(options, { completionMode: 'auto', maxTokens: 0, requestTimeoutS: 10 });
    const withAddress = initializationOptions({ ...DEFAULTS, serverAddress: '127.0.0.1:1' });
    assert.equal(withAddress.servingAddress, '127.0.0.1:1');
  });

  it('passes the connection settings through as serving* keys', () => {
    const { settings, problems } = parseSettings(
      reader({
        'server.tokenFile': ' /home/a/.quill-token ',
        'server.tls': true,
        'server.caFile': '/etc/quill/ca.pem',
        'server.clientCert': '/home/a/client.pem',
        'server.clientKey': '/home/a/client-key.pem',
      }),
    );
    assert.deepEqual(problems, []);
    const options = initializationOptions(settings);
    assert.equal(options.servingTokenFile, '/home/a/.quill-token');
    assert.equal(options.servingTls, true);
    assert.equal(options.servingCaFile, '/etc/quill/ca.pem');
    assert.equal(options.servingClientCert, '/home/a/client.pem');
    assert.equal(options.servingClientKey, '/home/a/client-key.pem');
    assert.equal('servingToken' in options, false);
  });

  it('reports connection settings of the wrong type', () => {
    const { settings, problems } = parseSettings(
      reader({ 'server.tls': 'yes', 'server.token': 42 }),
    );
    assert.deepEqual(settings.connection, DEFAULTS.connection);
    assert.deepEqual(problems, ['quill.server.token must be a string', 'quill.server.tls must be a boolean']);
  });
});

describe('Debouncer', () => {
  it('lets a lone request through after the delay', async () => {
    const debouncer = new Debouncer(() => 20);
    const started = Date.now();
    assert.equal(await debouncer.wait(new Token()), true);
    assert.ok(Date.now() - started >= 15);
  });

  it('drops a request superseded by a newer one', async () => {
    const debouncer = new Debouncer(() => 30);
    const first = debouncer.wait(new Token());
    const second = debouncer.wait(new Token());
    assert.equal(await first, false);
    assert.equal(await second, true);
  });

  it('drops a cancelled request at once', async () => {
    const debouncer = new Debouncer(() => 10_000);
    const token = new Token();
    const waiting = debouncer.wait(token);
    const started = Date.now();
    token.cancel();
    assert.equal(await waiting, false);
    assert.ok(Date.now() - started < 1000);
  });

  it('drops a request cancelled before it starts', async () => {
    const token = new Token();
    token.cancel();
    assert.equal(await new Debouncer(() => 0).wait(token), false);
  });

  it('supersede releases the waiting request', async () => {
    const debouncer = new Debouncer(() => 10_000);
    const waiting = debouncer.wait();
    debouncer.supersede();
    assert.equal(await waiting, false);
  });
});

describe('StatusModel', () => {
  it('goes starting -> connected -> generating -> connected', () => {
    const model = new StatusModel();
    assert.equal(model.state, 'starting');
    assert.equal(model.apply({ kind: 'running' }), 'connected');
    assert.equal(model.apply({ kind: 'requestStarted' }), 'generating');
    assert.equal(model.apply({ kind: 'requestStarted' }), 'generating');
    assert.equal(model.apply({ kind: 'requestFinished' }), 'generating');
    assert.equal(model.apply({ kind: 'requestFinished' }), 'connected');
    assert.equal(model.apply({ kind: 'requestFinished' }), 'connected');
  });

  it('shows serving unreachable until it is back', () => {
    const model = new StatusModel();
    model.apply({ kind: 'running' });
    assert.equal(model.apply({ kind: 'servingUnavailable', detail: 'still loading' }), 'unreachable');
    assert.match(model.view().tooltip, /still loading/);
    assert.equal(model.view().warning, true);
    assert.equal(model.apply({ kind: 'requestStarted' }), 'unreachable');
    model.apply({ kind: 'requestFinished' });
    assert.equal(model.apply({ kind: 'servingAvailable' }), 'connected');
    assert.equal(model.apply({ kind: 'stats', servingAvailable: false }), 'unreachable');
    assert.equal(model.apply({ kind: 'stats', servingAvailable: true }), 'connected');
  });

  it('reports failures and stops', () => {
    const model = new StatusModel();
    assert.equal(model.apply({ kind: 'failed', detail: 'no quill' }), 'error');
    assert.match(model.view().tooltip, /no quill/);
    assert.equal(model.apply({ kind: 'starting' }), 'starting');
    model.apply({ kind: 'running' });
    model.apply({ kind: 'requestStarted' });
    assert.equal(model.apply({ kind: 'stopped' }), 'stopped');
    model.apply({ kind: 'failed' });
    assert.equal(model.apply({ kind: 'stopped' }), 'error');
  });
});

describe('classifyServerMessage', () => {
  it('recognises quill lsp outage and recovery messages', () => {
    assert.deepEqual(
      classifyServerMessage(
        'Quill: serving at 127.0.0.1:50051 is unavailable (not reachable or still loading); ' +
          'completions resume when it is back.',
      ),
      { kind: 'servingUnavailable', detail: 'not reachable or still loading' },
    );
    assert.deepEqual(classifyServerMessage('Quill: connected to serving at 127.0.0.1:50051.'), {
      kind: 'servingAvailable',
    });
    assert.equal(classifyServerMessage('Quill settings: unknown setting'), undefined);
  });
});

describe('RestartPolicy', () => {
  it('allows three restarts in the window, then stops', () => {
    const policy = new RestartPolicy(3, 1000);
    assert.equal(policy.shouldRestart(0), true);
    assert.equal(policy.shouldRestart(10), true);
    assert.equal(policy.shouldRestart(20), true);
    assert.equal(policy.shouldRestart(30), false);
    assert.equal(policy.shouldRestart(1015), true);
    policy.reset();
    assert.equal(policy.shouldRestart(1016), true);
  });
});

describe('formatStats', () => {
  it('summarises quill.stats', () => {
    assert.equal(
      formatStats({ shown: 4, accepted: 1, acceptedChars: 12, servingAvailable: true }),
      'Quill: 4 shown, 1 accepted (25%), 12 characters accepted; serving reachable.',
    );
    assert.match(formatStats({}), /0 shown, 0 accepted, 0 characters accepted; serving unreachable/);
  });
});

describe('refreshesActiveEditor', () => {
  const uri = 'file:///w/a.py';
  it('is true only for the active editor\'s document', () => {
    assert.equal(refreshesActiveEditor({ textDocument: { uri } }, uri), true);
    assert.equal(refreshesActiveEditor({ textDocument: { uri: 'file:///w/b.py' } }, uri), false);
    assert.equal(refreshesActiveEditor({ textDocument: { uri } }, undefined), false);
  });
  it('ignores malformed params', () => {
    for (const params of [null, undefined, 'x', {}, { textDocument: {} }, { textDocument: { uri: 3 } }]) {
      assert.equal(refreshesActiveEditor(params, uri), false);
    }
  });
});
