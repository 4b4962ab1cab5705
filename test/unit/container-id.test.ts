import t from 'tap';
import { ContainerId } from '../../src/schemas/common.js';

t.test('container ids runc users write are accepted', async (t) => {
  for (const id of ['mycontainer', 'lifecycle-test', 'a', 'A1_b.c-d', '0', 'x'.repeat(64)]) {
    t.ok(ContainerId.safeParse(id).success, id);
  }
});

t.test('ids that could be a path, a flag or a surprise are refused', async (t) => {
  for (const id of [
    '',
    '..',
    '.',
    'a/b',
    '-rf',
    '--root=/',
    'x'.repeat(65),
    'café',
    'a b',
    'a\0b',
    '.hidden',
    '_x',
    'a\nb',
  ]) {
    const result = ContainerId.safeParse(id);
    t.equal(result.success, false, JSON.stringify(id));
  }
});
