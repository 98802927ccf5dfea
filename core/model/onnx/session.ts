import ort from 'onnxruntime-node';
import type { OnnxModel } from './builder.js';

/** An onnxruntime session over a model whose large initializers travel as external data. */
export function createSession(
  model: OnnxModel,
  options: ort.InferenceSession.SessionOptions,
): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model.bytes, { ...options, externalData: model.externalData });
}
