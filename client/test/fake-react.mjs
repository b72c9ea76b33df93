// A tiny stand-in for React's hooks (useState, useEffect, useCallback), so
// react.js can be tested without installing React. One component at a
// time: mount(fn) renders it, re-renders (in a microtask, coalesced) when a
// state setter changes a value, runs effects after each render when their
// deps changed, and unmount() runs the cleanups. client/test/react-loader.mjs
// maps the bare specifier 'react' to this file.
let current = null;

class Runtime {
  constructor(component) {
    this.component = component;
    this.hooks = [];
    this.i = 0;
    this.effects = [];
    this.renders = 0;
    this.queued = false;
    this.result = undefined;
    this.mounted = true;
  }
  render() {
    this.queued = false;
    if (!this.mounted) return;
    current = this;
    this.i = 0;
    try {
      this.result = this.component();
    } finally {
      current = null;
    }
    this.renders++;
    const fx = this.effects.splice(0);
    for (const f of fx) f();
  }
  schedule() {
    if (this.queued || !this.mounted) return;
    this.queued = true;
    queueMicrotask(() => this.render());
  }
  unmount() {
    this.mounted = false;
    for (const h of this.hooks) if (h && h.cleanup) h.cleanup();
  }
}

const changed = (a, b) => !a || !b || a.length !== b.length || a.some((x, k) => !Object.is(x, b[k]));

export function useState(init) {
  const rt = current;
  const k = rt.i++;
  if (!rt.hooks[k]) {
    const h = { value: typeof init === 'function' ? init() : init };
    h.set = (v) => {
      const next = typeof v === 'function' ? v(h.value) : v;
      if (Object.is(next, h.value)) return;
      h.value = next;
      rt.schedule();
    };
    rt.hooks[k] = h;
  }
  return [rt.hooks[k].value, rt.hooks[k].set];
}

export function useEffect(fn, deps) {
  const rt = current;
  const k = rt.i++;
  const h = rt.hooks[k] || (rt.hooks[k] = { deps: undefined, cleanup: null, ran: false });
  if (h.ran && deps && !changed(deps, h.deps)) return;
  rt.effects.push(() => {
    if (h.cleanup) h.cleanup();
    const c = fn();
    h.cleanup = typeof c === 'function' ? c : null;
    h.deps = deps;
    h.ran = true;
  });
}

export function useCallback(fn, deps) {
  const rt = current;
  const k = rt.i++;
  const h = rt.hooks[k];
  if (h && !changed(deps, h.deps)) return h.fn;
  rt.hooks[k] = { fn, deps };
  return fn;
}

/** Render component (a function using the hooks) and keep it live. */
export function mount(component) {
  const rt = new Runtime(component);
  rt.render();
  return rt;
}
