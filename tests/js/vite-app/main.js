// A bundled consumer: imports the package by name; the built page generates in a Worker.
import { DiffusionLM } from 'unmask';

const out = document.getElementById('out');
try {
  const lm = await DiffusionLM.load(new URL('/target/models/fixture.gguf', location.href), { cache: false });
  const text = await lm.generateText('The cat', { length: 8, steps: 4, seed: 1 });
  out.textContent = `ok ${lm.device}: ${text}`;
} catch (e) {
  out.textContent = `error ${e.name}: ${e.message}`;
}
