import ort from 'onnxruntime-node';
import type { StoredKvLayer } from '../../kv/stored.js';
import { widenStoredLayer } from '../../kv/format.js';
import type { HostKvForm } from './graphs/index.js';

/**
 * The host bytes one assemble run uploads: every host chunk's stored rows of a group of layers, copied
 * once into one tensor per array kind, in the graph's layout [layers, 2 (K, V), rows, KV, hd] (int8:
 * values and scales apart). Each tensor a run feeds costs the WebGPU provider a staging buffer and a
 * queue submission, so a run feeds one (two for int8) instead of one per chunk and layer; and the arrays
 * are the runner's own, reused from run to run, so a run writes into memory already mapped.
 */
export class HostPacker {
  private buffers = new Map<string, ArrayBuffer>();
  /** Kinds whose buffer a pack holds until its run has read it: a concurrent pack gets fresh memory. */
  private readonly busy = new Set<string>();
  /** The kinds the pack under way took. */
  private held: string[] = [];

  private view<T extends Int8Array | Uint16Array | Float32Array>(
    kind: string,
    make: new (b: ArrayBuffer, offset: number, length: number) => T,
    bytesPer: number,
    length: number,
  ): T {
    if (this.busy.has(kind)) return new make(new ArrayBuffer(length * bytesPer), 0, length);
    this.busy.add(kind);
    this.held.push(kind);
    let b = this.buffers.get(kind);
    if (!b || b.byteLength < length * bytesPer) {
      b = new ArrayBuffer(Math.ceil(length * bytesPer * 1.25));
      this.buffers.set(kind, b);
    }
    return new make(b, 0, length);
  }

  /**
   * Feeds `host` (and `host_scale`) for `layers[j][i]`: layer j of host chunk i, each [n_i rows, KV, hd]
   * token-major. Layers of mixed forms (objects written under another KV_DTYPE) are widened to fp32.
   */
  pack(
    layers: readonly (readonly StoredKvLayer[])[],
    kvHeads: number,
    headDim: number,
  ): { form: HostKvForm; feeds: Record<string, ort.Tensor>; bytes: number; release: () => void } {
    this.held = [];
    const all = layers.flat();
    const form: HostKvForm = all.every((s) => s.dtype === all[0].dtype) ? all[0].dtype : 'float32';
    const src = form === all[0].dtype && all.every((s) => s.dtype === form) ? all : all.map(widened);
    const G = layers.length;
    const perLayer = src.slice(0, layers[0].length).reduce((a, s) => a + s.k.length, 0);
    const tokens = perLayer / (kvHeads * headDim);
    const values = G * 2 * perLayer;
    const out =
      form === 'int8'
        ? this.view('int8', Int8Array, 1, values)
        : form === 'float16'
          ? this.view('f16', Uint16Array, 2, values)
          : this.view('f32', Float32Array, 4, values);
    const scales = form === 'int8' ? this.view('scale', Uint16Array, 2, values / headDim) : null;
    for (let j = 0; j < G; j++) {
      let at = 0;
      for (let i = 0; i < layers[j].length; i++) {
        const s = src[j * layers[j].length + i];
        for (const t of [0, 1] as const) {
          const base = (j * 2 + t) * perLayer + at;
          out.set((t ? s.v : s.k) as never, base);
          if (s.dtype === 'int8') scales!.set(t ? s.vScale : s.kScale, base / headDim);
        }
        at += s.k.length;
      }
    }
    const hd = headDim;
    const feeds: Record<string, ort.Tensor> =
      form === 'int8'
        ? {
            host: new ort.Tensor('int8', out as Int8Array, [values / hd, hd]),
            host_scale: new ort.Tensor('float16', scales!, [values / hd]),
          }
        : { host: new ort.Tensor(form, out as never, [G, 2, tokens, kvHeads, hd]) };
    const bytes = out.byteLength + (scales?.byteLength ?? 0);
    const held = this.held;
    // The run that feeds them has copied them into staging buffers once it returns.
    return { form, feeds, bytes, release: () => held.forEach((k) => this.busy.delete(k)) };
  }
}

function widened(s: StoredKvLayer): StoredKvLayer {
  return { dtype: 'float32', ...widenStoredLayer(s) };
}
