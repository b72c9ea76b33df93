// Module resolve hook for the React hooks test: 'react' is fake-react.mjs.
export async function resolve(specifier, context, next) {
  if (specifier === 'react') return { url: new URL('./fake-react.mjs', import.meta.url).href, shortCircuit: true };
  return next(specifier, context);
}
