/**
 * "Quill: Search API": the pure part (result checking, the pick list). The language server
 * searches (`quill.searchApi`); the extension asks for a query, shows a quick pick and inserts
 * the chosen entry's signature snippet. Nothing here imports `vscode`.
 */

export const SEARCH_API_COMMAND = 'quill.searchApi';

export interface ApiItem {
  qualifiedName: string;
  kind: string;
  signature: string;
  summary: string;
  source: string;
  path: string;
  line: number;
  insertText: string;
  snippet: string;
}

export interface ApiPick {
  label: string;
  description: string;
  detail: string;
  item: ApiItem;
}

/** The server's answer, checked; throws an Error with a clear message when it is malformed. */
export function parseApiSearchResult(value: unknown): ApiItem[] {
  const items = (value as { items?: unknown } | null)?.items;
  if (!Array.isArray(items)) {
    throw new Error('the language server sent no API search result (is it an older version?)');
  }
  return items.map((raw, index) => {
    const item = raw as Record<string, unknown>;
    if (typeof item.qualifiedName !== 'string' || typeof item.snippet !== 'string') {
      throw new Error(`API search result ${index + 1} has no name or snippet`);
    }
    const text = (key: string): string => (typeof item[key] === 'string' ? item[key] : '');
    return {
      qualifiedName: item.qualifiedName,
      kind: text('kind'),
      signature: text('signature'),
      summary: text('summary'),
      source: text('source'),
      path: text('path'),
      line: typeof item.line === 'number' ? item.line : 0,
      insertText: typeof item.insertText === 'string' ? item.insertText : item.qualifiedName,
      snippet: item.snippet,
    };
  });
}

/** Quick pick entries: the name, where it comes from, and its signature and summary. */
export function apiPicks(items: ApiItem[]): ApiPick[] {
  return items.map((item) => ({
    label: item.qualifiedName,
    description: item.path ? `${item.path}:${item.line}` : item.source,
    detail: [item.signature, item.summary].filter((part) => part).join(' — '),
    item,
  }));
}
