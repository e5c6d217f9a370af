// Runs one README example (written out by readme.test.mjs) as a module of this page.
const n = new URLSearchParams(location.search).get('n');
try {
  await import(`/target/readme-js/${n}.mjs`);
  window.result = { ok: true };
} catch (e) {
  window.result = { ok: false, error: `${e?.name}: ${e?.message}` };
}
document.getElementById('status').textContent = 'done';
