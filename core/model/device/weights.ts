import ort from 'onnxruntime-node';
import { GraphBuilder, type DataType } from '../onnx/builder.js';
import type { WeightInput } from '../onnx/device-graphs.js';

const TENSOR_TYPE: Partial<Record<DataType, 'float32' | 'float16' | 'uint8'>> = {
  float: 'float32',
  float16: 'float16',
  uint8: 'uint8',
};

/** A weight as a host tensor (fed directly, as the start-up attention check does). */
export function hostWeightTensor(w: WeightInput): ort.Tensor {
  const type = TENSOR_TYPE[w.type];
  if (!type) throw new Error(`device weight ${w.name}: type ${w.type} cannot be fed`);
  return new ort.Tensor(type, w.make() as never, w.dims);
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
    const session = await this.uploader(w.type, w.dims.length);
    const x = hostWeightTensor(w);
    this.bytes += (x.data as Uint8Array).byteLength;
    return (await session.run({ x })).y;
  }

  /** One Identity graph per element type and rank: its output stays on the GPU. */
  private uploader(type: DataType, rank: number): Promise<ort.InferenceSession> {
    const key = `${type}:${rank}`;
    let s = this.uploaders.get(key);
    if (!s) {
      const g = new GraphBuilder('weight_upload');
      const dims = Array.from({ length: rank }, (_, i) => `d${i}`);
      g.output('y', g.o('Identity', [g.input('x', type, dims)]), type, dims);
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
