// Worker entry: one Host per Worker; messages are {id, op, args}, replies {id, ok, value|error}.
import { Host } from './host.js';

const host = new Host();
self.onmessage = async (ev) => {
  const { id, op, args } = ev.data;
  try {
    const value = await host.call(op, args);
    const transfer = value instanceof Uint8Array ? [value.buffer] : [];
    self.postMessage({ id, ok: true, value }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, error: { name: e?.name || 'Error', message: e?.message || String(e) } });
  }
};
