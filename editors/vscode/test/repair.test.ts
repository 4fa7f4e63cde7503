import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  candidatePicks,
  parseRepairResult,
  parseRepairSettings,
  repairInitializationOptions,
  repairLineArguments,
} from '../src/repair';

const EDIT = { documentChanges: [] };

describe('repair', () => {
  it('asks for the line without applying', () => {
    assert.deepEqual(repairLineArguments('file:///a.py', 4), [
      { uri: 'file:///a.py', line: 4, apply: false },
    ]);
    assert.deepEqual(repairLineArguments('file:///a.py', 4, 'pytest -q'), [
      { uri: 'file:///a.py', line: 4, apply: false, testCommand: 'pytest -q' },
    ]);
  });

  it('turns candidates into ranked picks', () => {
    const result = parseRepairResult({
      candidates: [
        { rank: 1, title: 't', patch: '    return os.path.join(a, b)', score: -0.42, parses: true, namesResolve: true, testsPass: true, edit: EDIT },
        { rank: 2, title: 't', patch: '    if a:\n        b()', score: -1, parses: true, namesResolve: false, edit: EDIT },
        { rank: 3, title: 't', patch: '    x = (', score: -0.1, parses: false, namesResolve: false, edit: EDIT },
      ],
      cancelled: false,
      message: 'Quill found 3 candidate patch(es) in 2.0 s.',
    });
    const picks = candidatePicks(result);
    assert.deepEqual(
      picks.map((p) => [p.label, p.description, p.detail]),
      [
        ['1. return os.path.join(a, b)', 'tests pass · valid · score -0.42', ''],
        ['2. if a:', 'unresolved names · score -1.00', '    if a: ⏎         b()'],
        ['3. x = (', 'does not parse · score -0.10', ''],
      ],
    );
    assert.equal(picks[0].candidate.edit, EDIT);
    assert.equal(result.message, 'Quill found 3 candidate patch(es) in 2.0 s.');
  });

  it('rejects malformed results with a clear message', () => {
    assert.throws(() => parseRepairResult(null), /no repair result/);
    assert.throws(() => parseRepairResult({ candidates: [{ patch: 1 }] }), /candidate 1 has no patch/);
    const cancelled = parseRepairResult({ candidates: [], cancelled: true, message: 'Repair cancelled.' });
    assert.equal(cancelled.cancelled, true);
  });

  it('reads the repair settings', () => {
    const values: Record<string, unknown> = {
      'repair.pythonPath': ' /venv/bin/python ',
      'repair.budget': 8,
      'repair.testCommand': 'pytest -q ',
    };
    const { settings, problems } = parseRepairSettings((key) => values[key]);
    assert.deepEqual(problems, []);
    assert.deepEqual(repairInitializationOptions(settings), {
      repairBudget: 8,
      pythonPath: '/venv/bin/python',
      repairTestCommand: 'pytest -q',
    });
    const bad = parseRepairSettings(
      (key) => ({ 'repair.pythonPath': 3, 'repair.budget': 2.5, 'repair.testCommand': 7 })[key],
    );
    assert.equal(bad.problems.length, 3);
    assert.deepEqual(repairInitializationOptions(bad.settings), { repairBudget: 0 });
  });
});
