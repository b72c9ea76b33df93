// JSON Patch against the shared vectors (test/vectors/patch.json): same
// results and the same error codes as the server, the document unchanged on
// error; plus immutability and structural sharing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { applyPatch, validatePatch, PatchError } from '../movex.js';

const vectors = JSON.parse(readFileSync(new URL('../../test/vectors/patch.json', import.meta.url), 'utf8'));

test('every shared patch vector: result or error code, input never modified', () => {
  assert.ok(vectors.length > 100);
  for (const v of vectors) {
    const doc = v.doc;
    const pristine = JSON.stringify(doc);
    const ops = JSON.parse(JSON.stringify(v.patch));
    if ('expected' in v) {
      let out;
      assert.doesNotThrow(() => { out = applyPatch(doc, ops); }, v.comment);
      assert.deepEqual(out, v.expected, v.comment);
    } else {
      assert.throws(() => applyPatch(doc, ops), (e) => {
        assert.ok(e instanceof PatchError, `${v.comment}: ${e}`);
        assert.equal(e.code, v.error, `${v.comment}: got ${e.code} (${e.message})`);
        return true;
      }, v.comment);
    }
    assert.equal(JSON.stringify(doc), pristine, `${v.comment}: document unchanged`);
    assert.equal(JSON.stringify(ops), JSON.stringify(v.patch), `${v.comment}: patch unchanged`);
  }
});

test('every vector also holds on deep-frozen input (nothing is mutated in place)', () => {
  const freeze = (x) => { if (x && typeof x === 'object') { Object.freeze(x); Object.values(x).forEach(freeze); } return x; };
  for (const v of vectors) {
    const doc = freeze(JSON.parse(JSON.stringify(v.doc)));
    const ops = freeze(JSON.parse(JSON.stringify(v.patch)));
    if ('expected' in v) assert.deepEqual(applyPatch(doc, ops), v.expected, v.comment);
    else assert.throws(() => applyPatch(doc, ops), (e) => e.code === v.error, v.comment);
  }
});

test('structural sharing: untouched subtrees are the same objects; changed paths are new', () => {
  const doc = { a: { x: [1, 2] }, b: { y: { z: 1 } }, c: [{ k: 1 }, { k: 2 }] };
  const out = applyPatch(doc, [{ op: 'replace', path: '/b/y/z', value: 2 }]);
  assert.notEqual(out, doc);
  assert.equal(out.a, doc.a, 'sibling shared');
  assert.equal(out.c, doc.c, 'sibling shared');
  assert.notEqual(out.b, doc.b);
  assert.notEqual(out.b.y, doc.b.y);
  assert.equal(doc.b.y.z, 1);
  const out2 = applyPatch(doc, [{ op: 'inc', path: '/c/1/k', value: 1 }]);
  assert.equal(out2.c[0], doc.c[0], 'array item shared');
  assert.notEqual(out2.c[1], doc.c[1]);
  assert.equal(out2.a, doc.a);
});

test('a test-only or empty patch returns the same document object', () => {
  const doc = { a: 1 };
  assert.equal(applyPatch(doc, []), doc);
  assert.equal(applyPatch(doc, [{ op: 'test', path: '/a', value: 1 }]), doc);
});

test('several ops on one container copy it once, and copies do not alias', () => {
  const doc = { list: [] };
  const out = applyPatch(doc, [
    { op: 'add', path: '/list/-', value: 1 },
    { op: 'add', path: '/list/-', value: 2 },
    { op: 'add', path: '/obj', value: { n: 1 } },
    { op: 'add', path: '/obj/m', value: 2 },
    { op: 'copy', from: '/obj', path: '/obj2' },
    { op: 'add', path: '/obj2/p', value: 3 },
    { op: 'add', path: '/obj/q', value: 4 },
  ]);
  assert.deepEqual(out, { list: [1, 2], obj: { n: 1, m: 2, q: 4 }, obj2: { n: 1, m: 2, p: 3 } });
  assert.deepEqual(doc, { list: [] });
});

test('values taken from the patch are not mutated by later ops', () => {
  const value = { n: 1 };
  const ops = [{ op: 'add', path: '/v', value }, { op: 'add', path: '/v/m', value: 2 }];
  const out = applyPatch({}, ops);
  assert.deepEqual(out, { v: { n: 1, m: 2 } });
  assert.deepEqual(value, { n: 1 });
});

test('the key "__proto__" is an ordinary member', () => {
  const doc = JSON.parse('{"__proto__": {"a": 1}}');
  const out = applyPatch(doc, [{ op: 'add', path: '/__proto__/b', value: 2 }, { op: 'add', path: '/x', value: 1 }]);
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.deepEqual(Object.keys(out).sort(), ['__proto__', 'x']);
  assert.equal(JSON.stringify(out), '{"__proto__":{"a":1,"b":2},"x":1}');
  const out2 = applyPatch({}, [{ op: 'add', path: '/__proto__', value: { polluted: true } }]);
  assert.equal(({}).polluted, undefined);
  assert.equal(Object.getPrototypeOf(out2), Object.prototype);
  assert.deepEqual(Object.keys(out2), ['__proto__']);
});

test('freeze option deep-freezes the result without touching the input', () => {
  const doc = { a: { b: 1 }, c: [1] };
  const out = applyPatch(doc, [{ op: 'add', path: '/a/d', value: { e: [1] } }], { freeze: true });
  assert.ok(Object.isFrozen(out) && Object.isFrozen(out.a) && Object.isFrozen(out.a.d.e));
  assert.ok(!Object.isFrozen(doc.a));
});

test('inc never produces -0 and creates a missing member with the value', () => {
  assert.ok(Object.is(applyPatch({ n: -1 }, [{ op: 'inc', path: '/n', value: 1 }]).n, 0));
  assert.ok(Object.is(applyPatch({}, [{ op: 'inc', path: '/n', value: -0 }]).n, 0));
});

test('validatePatch checks shape only', () => {
  validatePatch([{ op: 'add', path: '/01', value: 1 }]);
  assert.throws(() => validatePatch({}), PatchError);
  assert.throws(() => validatePatch([{ op: 'add', path: '/a\u0000b', value: 1 }]), (e) => e.code === 'bad_patch');
});
