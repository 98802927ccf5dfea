import ort from 'onnxruntime-node';
import { GraphBuilder, type DataType } from '../onnx/builder.js';
import { transpose2d } from '../onnx/linear.js';
import type { WeightInput } from './graphs/index.js';

const TENSOR_TYPE: Partial<Record<DataType, 'float32' | 'float16' | 'uint8'>> = {
  float: 'float32',
  float16: 'float16',
  uint8: 'uint8',
};

/** The tensor to send up: the values as make() gives them (for a transposed weight, its rows). */
function uploadTensor(w: WeightInput): ort.Tensor {
  const type = TENSOR_TYPE[w.type];
  if (!type) throw new Error(`device weight ${w.name}: type ${w.type} cannot be uploaded`);
  const dims = w.transpose ? [w.dims[1], w.dims[0]] : w.dims;
  return new ort.Tensor(type, w.make() as never, dims);
}

/** A weight as a host tensor in its graph layout (fed directly, as the start-up attention check does). */
export function hostWeightTensor(w: WeightInput): ort.Tensor {
  if (!w.transpose) return uploadTensor(w);
  const data = transpose2d(w.make() as Float32Array | Uint16Array, w.dims[1], w.dims[0]);
  return new ort.Tensor(TENSOR_TYPE[w.type]!, data as never, w.dims);
}

/**
 * A device runner's model weights on the GPU, each uploaded once, when the first graph that takes it is
 * built, and fed by name to every run (see WeightInput). The host copy is dropped after its upload, so a
 * model's weights are held on the host only one tensor at a time.
 */
export class DeviceWeights {
  private readonly tensors = new Map<string, Promise<ort.Tensor>>();
  private readonly uploaders = new Map<string, Promise<ort.InferenceSession>>();
  /** Bytes uploaded so far. */
  bytes = 0;

  constructor(private readonly sessionOptions: ort.InferenceSession.SessionOptions) {}

  /** Upload the weights not yet on the device (each at most once, also under concurrent calls). */
  async ensure(inputs: readonly WeightInput[]): Promise<void> {
    for (const w of inputs) {
      if (!this.tensors.has(w.name)) this.tensors.set(w.name, this.upload(w));
      await this.tensors.get(w.name);
    }
  }

  /** The device tensor of an uploaded weight, or undefined. */
  async get(name: string): Promise<ort.Tensor | undefined> {
    return this.tensors.get(name);
  }

  private async upload(w: WeightInput): Promise<ort.Tensor> {
    const session = await this.uploader(w.type, w.dims.length, w.transpose ?? false);
    const x = uploadTensor(w);
    this.bytes += (x.data as Uint8Array).byteLength;
    return (await session.run({ x })).y;
  }

  /**
   * One graph per element type, rank and layout: an Identity, or a transposition (done on the GPU: at
   * billions of weights it is minutes in JavaScript), whose output stays on the GPU.
   */
  private uploader(type: DataType, rank: number, transpose: boolean): Promise<ort.InferenceSession> {
    const key = `${type}:${rank}:${transpose}`;
    let s = this.uploaders.get(key);
    if (!s) {
      const g = new GraphBuilder('weight_upload');
      const dims = Array.from({ length: rank }, (_, i) => `d${i}`);
      const x = g.input('x', type, dims);
      const y = transpose ? g.o('Transpose', [x], { perm: [1, 0] }) : g.o('Identity', [x]);
      g.output('y', y, type, transpose ? [dims[1], dims[0]] : dims);
      s = ort.InferenceSession.create(g.toBytes(), {
        ...this.sessionOptions,
        preferredOutputLocation: 'gpu-buffer',
      });
      this.uploaders.set(key, s);
    }
    return s;
  }

  async dispose(): Promise<void> {
    for (const t of this.tensors.values()) (await t.catch(() => null))?.dispose();
    this.tensors.clear();
    for (const s of this.uploaders.values()) await (await s).release();
    this.uploaders.clear();
  }
}
