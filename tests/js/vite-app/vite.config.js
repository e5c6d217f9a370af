export default {
  base: './',
  // The package's Worker is an ES module that imports the wasm glue.
  worker: { format: 'es' },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
  logLevel: 'warn',
};
