import t from 'tap';
import { DEFAULT_DETACH_KEYS, DetachKeyScanner, parseDetachKeys } from '../../src/detach-keys.js';

// Docker's detach-key syntax and the escape proxy's behaviour: keys that might start the sequence are held
// back, given back when the sequence breaks, and the whole sequence never reaches the container.

t.test("Docker's syntax: characters and ctrl-X, comma-separated", async (t) => {
  t.same([...parseDetachKeys(DEFAULT_DETACH_KEYS)], [16, 17], 'ctrl-p,ctrl-q is 16 17');
  t.same([...parseDetachKeys('')], [16, 17], 'empty is the default');
  t.same([...parseDetachKeys('ctrl-a,d')], [1, 100]);
  t.same([...parseDetachKeys('CTRL-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_')], [0, 27, 28, 29, 30, 31]);
  t.same([...parseDetachKeys('ctrl-z')], [26]);
  for (const bad of ['ctrl-1', 'ctrl-', 'ab', 'alt-x', 'ctrl-p,,ctrl-q', 'é']) {
    t.throws(() => parseDetachKeys(bad), /unknown detach key/, `"${bad}" is refused`);
  }
});

t.test('the sequence detaches and never reaches the container', async (t) => {
  const scanner = new DetachKeyScanner(parseDetachKeys(DEFAULT_DETACH_KEYS));
  t.equal(scanner.scan(Buffer.from('ls\n')).toString(), 'ls\n', 'ordinary input goes through as it is');
  t.equal(scanner.scan(Buffer.from([16])).length, 0, 'ctrl-p is held back');
  t.notOk(scanner.detached);
  t.equal(scanner.scan(Buffer.from([17, 0x41])).length, 0, 'ctrl-q completes it: nothing after goes on');
  t.ok(scanner.detached, 'detached');
  t.equal(scanner.scan(Buffer.from('more')).length, 0, 'and nothing more is forwarded');
});

t.test('a broken sequence gives the held keys back, in order', async (t) => {
  const scanner = new DetachKeyScanner(parseDetachKeys(DEFAULT_DETACH_KEYS));
  t.same([...scanner.scan(Buffer.from([16]))], []);
  t.same([...scanner.scan(Buffer.from('x'))], [16, 0x78], 'ctrl-p then x: both go on');
  t.same([...scanner.scan(Buffer.from([16, 16]))], [16], 'a second ctrl-p may start it again');
  t.same([...scanner.scan(Buffer.from([17]))], [], 'and does');
  t.ok(scanner.detached);
});

t.test('the sequence inside a larger chunk detaches after what came before it', async (t) => {
  const scanner = new DetachKeyScanner(parseDetachKeys('ctrl-a,d'));
  t.equal(scanner.scan(Buffer.from('echo hi\n\x01dtail')).toString(), 'echo hi\n');
  t.ok(scanner.detached);
  const single = new DetachKeyScanner(parseDetachKeys('ctrl-]'));
  t.equal(single.scan(Buffer.from('ab\x1dc')).toString(), 'ab', 'a one-key sequence');
  t.ok(single.detached);
});
