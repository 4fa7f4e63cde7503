/**
 * "Quill: Repair line": the pure part (arguments, result checking, the pick list, repair settings).
 * The language server does the work (`quill.repairLine`, with its own $/progress and cancel
 * button); the extension only lets the user pick a candidate. Nothing here imports `vscode`.
 */

import type { SettingReader } from './logic';

export const REPAIR_LINE_COMMAND = 'quill.repairLine';

export interface RepairCandidate {
  rank: number;
  title: string;
  patch: string;
  score: number;
  parses: boolean;
  namesResolve: boolean;
  /** True/false once the test command ran on it; null when it was not tested. */
  testsPass: boolean | null;
  /** An LSP WorkspaceEdit (versioned: it is refused if the document changed meanwhile). */
  edit: unknown;
}

export interface RepairResult {
  candidates: RepairCandidate[];
  cancelled: boolean;
  message: string;
}

export interface CandidatePick {
  label: string;
  description: string;
  detail: string;
  candidate: RepairCandidate;
}

/**
 * Arguments of `quill.repairLine` for a zero-based line; the user picks, so nothing is applied.
 * A configured test command goes along: candidates whose tests pass rank first.
 */
export function repairLineArguments(uri: string, line: number, testCommand = ''): unknown[] {
  const options: Record<string, unknown> = { uri, line, apply: false };
  if (testCommand !== '') {
    options.testCommand = testCommand;
  }
  return [options];
}

/** The server's answer, checked; throws an Error with a clear message when it is malformed. */
export function parseRepairResult(value: unknown): RepairResult {
  if (typeof value !== 'object' || value === null || !Array.isArray((value as RepairResult).candidates)) {
    throw new Error('the language server sent no repair result (is it an older version?)');
  }
  const raw = value as Record<string, unknown>;
  const candidates = (raw.candidates as unknown[]).map((item, index) => {
    const c = item as Record<string, unknown>;
    if (typeof c.patch !== 'string' || typeof c.edit !== 'object' || c.edit === null) {
      throw new Error(`repair candidate ${index + 1} has no patch or edit`);
    }
    return {
      rank: typeof c.rank === 'number' ? c.rank : index + 1,
      title: typeof c.title === 'string' ? c.title : c.patch.trim(),
      patch: c.patch,
      score: typeof c.score === 'number' ? c.score : 0,
      parses: c.parses === true,
      namesResolve: c.namesResolve === true,
      testsPass: typeof c.testsPass === 'boolean' ? c.testsPass : null,
      edit: c.edit,
    };
  });
  return {
    candidates,
    cancelled: raw.cancelled === true,
    message: typeof raw.message === 'string' ? raw.message : '',
  };
}

function flags(candidate: RepairCandidate): string {
  if (!candidate.parses) {
    return 'does not parse';
  }
  const validity = candidate.namesResolve ? 'valid' : 'unresolved names';
  if (candidate.testsPass === null) {
    return validity;
  }
  return `${candidate.testsPass ? 'tests pass' : 'tests fail'} · ${validity}`;
}

/** QuickPick items in the server's ranking: the patch as label, score and validity aside. */
export function candidatePicks(result: RepairResult): CandidatePick[] {
  return result.candidates.map((candidate) => {
    const lines = candidate.patch.split('\n').filter((line) => line.trim() !== '');
    return {
      label: `${candidate.rank}. ${lines[0]?.trim() ?? '(delete the line)'}`,
      description: `${flags(candidate)} · score ${candidate.score.toFixed(2)}`,
      detail: lines.length > 1 ? lines.map((line) => line.trimEnd()).join(' ⏎ ') : '',
      candidate,
    };
  });
}

export interface RepairSettings {
  /** Interpreter whose environment Jedi completes against; empty: the workspace's .venv. */
  pythonPath: string;
  /** Candidate patches per repair; 0: serving's default. */
  repairBudget: number;
  /** Shell command running the workspace's tests; empty: candidates are not tested. */
  testCommand: string;
}

export const REPAIR_RESTART_KEYS = ['repair.pythonPath', 'repair.budget', 'repair.testCommand'];

export function parseRepairSettings(read: SettingReader): {
  settings: RepairSettings;
  problems: string[];
} {
  const problems: string[] = [];
  const settings: RepairSettings = { pythonPath: '', repairBudget: 0, testCommand: '' };
  const python = read('repair.pythonPath');
  if (python !== undefined && python !== null && python !== '') {
    if (typeof python === 'string') {
      settings.pythonPath = python.trim();
    } else {
      problems.push('quill.repair.pythonPath must be a path');
    }
  }
  const budget = read('repair.budget');
  if (budget !== undefined && budget !== null) {
    if (typeof budget === 'number' && Number.isInteger(budget) && budget >= 0 && budget <= 64) {
      settings.repairBudget = budget;
    } else {
      problems.push('quill.repair.budget must be a whole number between 0 and 64');
    }
  }
  const testCommand = read('repair.testCommand');
  if (testCommand !== undefined && testCommand !== null && testCommand !== '') {
    if (typeof testCommand === 'string') {
      settings.testCommand = testCommand.trim();
    } else {
      problems.push('quill.repair.testCommand must be a shell command');
    }
  }
  return { settings, problems };
}

/** The repair part of `initializationOptions` (camelCase, as lsp_server/settings.py reads it). */
export function repairInitializationOptions(settings: RepairSettings): Record<string, unknown> {
  const options: Record<string, unknown> = { repairBudget: settings.repairBudget };
  if (settings.pythonPath !== '') {
    options.pythonPath = settings.pythonPath;
  }
  if (settings.testCommand !== '') {
    options.repairTestCommand = settings.testCommand;
  }
  return options;
}
