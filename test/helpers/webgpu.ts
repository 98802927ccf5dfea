import ort from 'onnxruntime-node';
import { GraphBuilder } from '../../core/model/onnx/builder.js';

/**
 * Whether onnxruntime's WebGPU provider finds an adapter here (a GPU, or a software Vulkan driver such as
 * Mesa's lavapipe). Tests that need it skip with this reason where it does not.
 */
async function probe(): Promise<string | null> {
  try {
    const g = new GraphBuilder('probe');
    g.output('y', g.o('Neg', [g.input('x', 'float', [1])]), 'float', [1]);
    const s = await ort.InferenceSession.create(g.toBytes(), { executionProviders: ['webgpu'] });
    await s.release();
    return null;
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
}

const reason = await probe();
if (reason) console.warn(`WebGPU tests skipped: no WebGPU adapter here (${reason})`);

export const noWebGpu = reason !== null;
