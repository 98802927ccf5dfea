import onnxProto from 'onnx-proto';
import { float32ToFloat16Bits } from '../../util/half.js';

const { onnx } = onnxProto;
export type DataType = 'float' | 'float16' | 'int64' | 'int32' | 'bool' | 'uint8' | 'int8';

export const ELEM: Record<DataType, number> = {
  float: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  uint8: onnx.TensorProto.DataType.UINT8,
  int8: onnx.TensorProto.DataType.INT8,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  bool: onnx.TensorProto.DataType.BOOL,
};

function toFloat16(data: Float32Array): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = float32ToFloat16Bits(data[i]);
  return out;
}

/** A symbolic or fixed dimension of a graph input/output. */
export type Dim = number | string;

/**
 * A serialized graph and the bytes of its large initializers, kept out of the protobuf (which stops at
 * 2 GB) as ONNX external data: each initializer of EXTERNAL_MIN_BYTES or more is its own in-memory "file",
 * handed to onnxruntime with the session options (`externalData`), which copies it while the session is
 * created — the arrays can be dropped right after.
 */
export interface OnnxModel {
  bytes: Uint8Array;
  externalData: { path: string; data: Uint8Array }[];
}

export const EXTERNAL_MIN_BYTES = 4096;

/**
 * A small typed builder over the ONNX protobuf messages. Each `op` call appends one node and returns its
 * output name(s); names are generated so graph code reads like the math it implements.
 */
export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private counter = 0;
  /** Names of the weights added: a graph that unrolls layers (a decode burst) names each weight once. */
  private readonly weightNames = new Set<string>();
  /** Values renamed to the graph output they became (see output). */
  private readonly renamed = new Map<string, string>();
  /** Operator domains besides ONNX's own that the graph uses (e.g. com.microsoft contrib ops). */
  private readonly domains = new Set<string>();

  constructor(private readonly name: string) {}

  private fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  input(name: string, type: DataType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /**
   * Declare `from` a graph output named `name`. A value a node produces is renamed (every reader follows),
   * so no Identity kernel copies it: on a GPU provider each kernel costs a dispatch, and a value that
   * other nodes also read (a decode burst's per-step cache) would be copied in full.
   */
  output(name: string, from: string, type: DataType, dims: Dim[]): void {
    const producer = this.renamed.has(from) ? null : this.nodes.find((n) => n.output?.includes(from));
    if (producer) {
      producer.output = producer.output!.map((o) => (o === from ? name : o));
      for (const n of this.nodes) n.input = n.input!.map((i) => (i === from ? name : i));
      this.renamed.set(from, name);
    } else this.op('Identity', [from], {}, [name]);
    this.outputs.push(valueInfo(name, type, dims));
  }

  /** Whether a weight of this name was added. */
  hasWeight(name: string): boolean {
    return this.weightNames.has(name);
  }

  /**
   * A float initializer; `data` is referenced, not copied, until the model is serialized. With `type`
   * 'float16' the values are rounded to half precision (a new array). A name already added is returned as
   * it is (the same weight used again).
   */
  weight(name: string, data: Float32Array, dims: number[], type: 'float' | 'float16' = 'float'): string {
    if (this.weightNames.has(name)) return name;
    return this.tensor(name, type, dims, type === 'float16' ? toFloat16(data) : data);
  }

  /**
   * An initializer of given bits: fp32 values, fp16 bits (Uint16Array) or bytes (uint8). Referenced, not
   * copied, until the model is serialized.
   */
  tensor(
    name: string,
    type: DataType,
    dims: number[],
    data: Float32Array | Uint16Array | Uint8Array,
  ): string {
    if (this.weightNames.has(name)) return name;
    this.weightNames.add(name);
    const expected = dims.reduce((a, b) => a * b, 1);
    if (expected !== data.length)
      throw new Error(`initializer ${name}: ${data.length} values for dims ${dims}`);
    this.initializers.push({
      name,
      dataType: ELEM[type],
      dims,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }

  int64s(values: number[], hint = 'const'): string {
    const name = this.fresh(hint);
    const raw = new BigInt64Array(values.map((v) => BigInt(v)));
    this.initializers.push({
      name,
      dataType: ELEM.int64,
      dims: [values.length],
      rawData: new Uint8Array(raw.buffer),
    });
    return name;
  }

  scalar(value: number, hint = 'scalar', type: 'float' | 'float16' = 'float'): string {
    const name = this.fresh(hint);
    const raw = type === 'float16' ? toFloat16(new Float32Array([value])) : new Float32Array([value]);
    this.initializers.push({ name, dataType: ELEM[type], dims: [], rawData: new Uint8Array(raw.buffer) });
    return name;
  }

  int32s(values: number[], hint = 'const'): string {
    const name = this.fresh(hint);
    this.initializers.push({
      name,
      dataType: ELEM.int32,
      dims: [values.length],
      rawData: new Uint8Array(new Int32Array(values).buffer),
    });
    return name;
  }

  op(
    opType: string,
    inputs: string[],
    attrs: Record<string, number | number[] | string> = {},
    outputNames?: string[] | number,
    domain = '',
  ): string[] {
    const outputs =
      typeof outputNames === 'number' || outputNames === undefined
        ? Array.from({ length: outputNames ?? 1 }, () => this.fresh(opType.toLowerCase()))
        : outputNames;
    const attribute = Object.entries(attrs).map(([name, v]) => attributeProto(name, v));
    if (domain) this.domains.add(domain);
    this.nodes.push({
      opType,
      domain,
      input: inputs.map((i) => this.renamed.get(i) ?? i),
      output: outputs,
      attribute,
      name: this.fresh(`n_${opType}`),
    });
    return outputs;
  }

  /** Single-output convenience. */
  o(opType: string, inputs: string[], attrs: Record<string, number | number[] | string> = {}): string {
    return this.op(opType, inputs, attrs)[0];
  }

  /** Names of the graph outputs declared so far. */
  outputNames(): string[] {
    return this.outputs.map((o) => o.name ?? '');
  }

  /** The model with every initializer inside the protobuf (small graphs; see toModel for weights). */
  toBytes(opset = 17): Uint8Array {
    return onnx.ModelProto.encode(this.proto(this.initializers, opset)).finish();
  }

  /** The model with its large initializers as external data (see OnnxModel). */
  toModel(opset = 17): OnnxModel {
    const externalData: OnnxModel['externalData'] = [];
    const initializers = this.initializers.map((t) => {
      const raw = t.rawData!;
      if (raw.byteLength < EXTERNAL_MIN_BYTES) return t;
      const path = `w${externalData.length}.bin`;
      externalData.push({ path, data: raw });
      return {
        ...t,
        rawData: undefined,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: path },
          { key: 'offset', value: '0' },
          { key: 'length', value: String(raw.byteLength) },
        ],
      };
    });
    return { bytes: onnx.ModelProto.encode(this.proto(initializers, opset)).finish(), externalData };
  }

  private proto(initializer: onnxProto.onnx.ITensorProto[], opset: number): onnxProto.onnx.ModelProto {
    return onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'cacheblend',
      opsetImport: [
        { domain: '', version: opset },
        ...[...this.domains].map((domain) => ({ domain, version: 1 })),
      ],
      graph: {
        name: this.name,
        node: this.nodes,
        initializer,
        input: this.inputs,
        output: this.outputs,
      },
    });
  }
}

function valueInfo(name: string, type: DataType, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attributeProto(name: string, v: number | number[] | string): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if (Number.isInteger(v)) return { name, type: T.INT, i: v };
  return { name, type: T.FLOAT, f: v };
}
