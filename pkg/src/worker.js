// Worker entry: one Host per Worker; messages are {id, op, args}, replies {id, ok, value|error}.
import { Host } from './host.js';

const host = new Host();
self.onmessage = async (ev) => {
  const { id, op, args } = ev.data;
  try {
    const value = await host.call(op, args);
    // Typed arrays that own their whole buffer (model bytes, logits) move instead of copying.
    const owned = ArrayBuffer.isView(value) && value.buffer instanceof ArrayBuffer && value.byteLength === value.buffer.byteLength;
    const transfer = owned ? [value.buffer] : [];
    self.postMessage({ id, ok: true, value }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, error: { name: e?.name || 'Error', message: e?.message || String(e) } });
  }
};
