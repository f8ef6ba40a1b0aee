// Preloaded (node --import): says on stderr each time the program compiles a function from a string
// (`new Function(...)` or `Function(...)` with a body), as zod does for an object schema's validator,
// and goes on. An empty body is not reported: zod makes one, once, to learn whether it may compile.
// A test that a program validates without compiling code looks for the line.
const made = globalThis.Function;
const report = (args) => {
  if (String(args.at(-1) ?? '').trim() !== '')
    process.stderr.write('code-from-strings-preload: a function compiled from a string\n');
};
globalThis.Function = new Proxy(made, {
  construct(target, args, newTarget) {
    report(args);
    return Reflect.construct(target, args, newTarget);
  },
  apply(target, self, args) {
    report(args);
    return Reflect.apply(target, self, args);
  },
});
