import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { apiPicks, parseApiSearchResult } from '../src/apiSearch';

describe('api search', () => {
  it('turns hits into picks with where they come from', () => {
    const items = parseApiSearchResult({
      items: [
        { qualifiedName: 'os.path.join', kind: 'function', signature: 'join(a, *p)', summary: 'Join paths.', source: 'stdlib', path: '', line: 0, insertText: 'os.path.join(a)', snippet: 'os.path.join(${1:a})$0' },
        { qualifiedName: 'shop.billing.total', kind: 'function', signature: 'total(items)', summary: '', source: 'workspace', path: 'shop/billing.py', line: 3, insertText: 'shop.billing.total(items)', snippet: 'shop.billing.total(${1:items})$0' },
      ],
    });
    const picks = apiPicks(items);
    assert.equal(picks[0].label, 'os.path.join');
    assert.equal(picks[0].description, 'stdlib');
    assert.equal(picks[0].detail, 'join(a, *p) — Join paths.');
    assert.equal(picks[1].description, 'shop/billing.py:3');
    assert.equal(picks[1].detail, 'total(items)');
    assert.equal(picks[1].item.snippet, 'shop.billing.total(${1:items})$0');
  });

  it('rejects malformed answers with a clear message', () => {
    assert.throws(() => parseApiSearchResult(null), /no API search result/);
    assert.throws(() => parseApiSearchResult({ items: [{ kind: 'function' }] }), /result 1 has no name/);
  });
});
