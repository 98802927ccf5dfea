import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { UnavailableError } from '../../errors.js';

export type ExecutionProvider = 'cpu' | 'webgpu' | 'cuda';

/**
 * A provider that cannot start fails with what to install, not onnxruntime's library error alone: the CUDA
 * provider's binaries are not in onnxruntime-node's npm package (its install script fetches them on
 * request) and need CUDA 12 and cuDNN 9; WebGPU needs a Vulkan driver and loader.
 */
/** How to fetch onnxruntime-node's CUDA binaries; its install script runs only when asked to. */
export const CUDA_INSTALL =
  'ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node --ignore-scripts=false';

/** The CUDA provider's libraries onnxruntime-node loads, missing from its folder (empty: all there). */
function missingCudaLibraries(): string[] {
  let dir: string;
  try {
    const pkg = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
    dir = path.join(path.dirname(pkg), 'bin/napi-v6', process.platform, process.arch);
  } catch {
    return []; // laid out otherwise: let onnxruntime say what it finds
  }
  if (!existsSync(dir)) return [];
  return ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'].filter(
    (f) => !existsSync(path.join(dir, f)),
  );
}

/**
 * Refuse the CUDA provider before onnxruntime tries to load it when its binaries are not installed (its
 * attempt would also print its own error line on stderr); the message says what to install.
 */
export function checkProviderInstalled(ep: ExecutionProvider): void {
  if (ep !== 'cuda' || process.platform !== 'linux') return;
  const missing = missingCudaLibraries();
  if (missing.length > 0)
    throw providerUnavailable(ep, new Error(`Failed to load ${missing.join(', ')}: not installed`));
}

export function providerUnavailable(ep: ExecutionProvider, err: unknown): unknown {
  const msg = err instanceof Error ? err.message : String(err);
  if (ep === 'cuda' && /Failed to load|cannot open shared object|providers_(shared|cuda)|CUDA/i.test(msg)) {
    return new UnavailableError(
      'the CUDA execution provider could not be loaded. It needs NVIDIA CUDA 12 and cuDNN 9 installed ' +
        "(their libraries on the loader's path) and onnxruntime-node's CUDA binaries, which npm does not " +
        'install by default (this project keeps install scripts off): run ' +
        `\`${CUDA_INSTALL}\`. onnxruntime said: ${msg.split('\n')[0]}`,
      { cause: err },
    );
  }
  if (ep === 'webgpu' && /adapter|Vulkan|vkCreateInstance/i.test(msg)) {
    return new UnavailableError(
      "the WebGPU execution provider found no GPU adapter. It runs through Vulkan: install the GPU's " +
        'Vulkan driver and the Vulkan loader (Debian/Ubuntu: libvulkan1; with an NVIDIA driver also the GL ' +
        `vendor libraries, libglvnd0 libegl1); see docs/gpu.md. onnxruntime said: ${msg.split('\n')[0]}`,
      { cause: err },
    );
  }
  return err;
}
