/**
 * Which GPU a process computes on (GPU_INDEX / `--gpu`).
 *
 * Indices are the host's GPUs in PCI bus order — the order of `nvidia-smi` and of CUDA with
 * CUDA_DEVICE_ORDER=PCI_BUS_ID — counting devices bound to a GPU driver (a server's BMC display adapter
 * is not a GPU). The CUDA provider takes the index as its `deviceId`. onnxruntime's WebGPU provider offers
 * no choice of adapter (Dawn takes the first high-performance one; a custom device can't be handed over
 * from Node), so the choice is made underneath it, per process: Mesa's Vulkan device-select layer
 * (Debian/Ubuntu package mesa-vulkan-drivers; it works over NVIDIA's driver too) is told the GPU's PCI
 * address and shows this process that GPU alone. One process serves one GPU: `cacheblend serve --gpus`
 * starts a worker process per GPU.
 */
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InvalidArgumentError, UnavailableError } from '../errors.js';

export interface GpuInfo {
  index: number;
  /** PCI address, e.g. 0000:18:00.0 */
  pciAddress: string;
  vendorId: string;
  deviceId: string;
  /** The kernel driver bound to it (nvidia, amdgpu, i915, xe, …). */
  driver: string;
}

/** Kernel drivers of compute-capable GPUs; display-only adapters (ast, mgag200, bochs) are left out. */
const GPU_DRIVERS = new Set(['nvidia', 'nouveau', 'amdgpu', 'radeon', 'i915', 'xe']);

/** PCI class 0x03xxxx: display controllers (VGA 0x0300, 3D controller 0x0302 as data-centre GPUs are). */
const DISPLAY_CLASS = /^0x03/;

/**
 * The host's GPUs in PCI bus order, read from sysfs; where a container hides the PCI tree, from the NVIDIA
 * driver's own list (/proc/driver/nvidia/gpus, one folder per PCI address). Empty where there is none.
 */
export function listGpus(
  sysfsPci = '/sys/bus/pci/devices',
  nvidiaProc = '/proc/driver/nvidia/gpus',
): GpuInfo[] {
  const fromSysfs = sysfsGpus(sysfsPci);
  if (fromSysfs.length > 0) return fromSysfs;
  return listDir(nvidiaProc).map((address, index) => ({
    index,
    pciAddress: address.toLowerCase(),
    vendorId: '10de',
    deviceId: '',
    driver: 'nvidia',
  }));
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function sysfsGpus(sysfsPci: string): GpuInfo[] {
  const entries = listDir(sysfsPci);
  const gpus: GpuInfo[] = [];
  for (const address of entries) {
    const dir = path.join(sysfsPci, address);
    const pciClass = readTrimmed(path.join(dir, 'class'));
    if (!pciClass || !DISPLAY_CLASS.test(pciClass)) continue;
    const driver = driverName(dir);
    if (!GPU_DRIVERS.has(driver)) continue;
    gpus.push({
      index: gpus.length,
      pciAddress: address,
      vendorId: (readTrimmed(path.join(dir, 'vendor')) ?? '').replace(/^0x/, ''),
      deviceId: (readTrimmed(path.join(dir, 'device')) ?? '').replace(/^0x/, ''),
      driver,
    });
  }
  return gpus;
}

function readTrimmed(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function driverName(dir: string): string {
  try {
    return path.basename(readlinkSync(path.join(dir, 'driver')));
  } catch {
    return '';
  }
}

export function describeGpus(gpus: readonly GpuInfo[]): string {
  if (gpus.length === 0) return 'this host has no GPU bound to a GPU driver';
  const list = gpus.map((g) => `${g.index} (${g.pciAddress}, ${g.driver} ${g.vendorId}:${g.deviceId})`);
  return `this host has GPU ${list.join(', ')}`;
}

/** The GPU behind an index, or a clear error naming the indices that exist. */
export function gpuAt(index: number, gpus: readonly GpuInfo[] = listGpus()): GpuInfo {
  const gpu = gpus[index];
  if (!Number.isInteger(index) || index < 0 || !gpu) {
    throw new InvalidArgumentError(`GPU ${index} does not exist: ${describeGpus(gpus)}`);
  }
  return gpu;
}

/** Mesa's tag for a PCI address: 0000:18:00.0 → pci-0000_18_00_0. */
export function driPrimeTag(pciAddress: string): string {
  return `pci-${pciAddress.replace(/[:.]/g, '_')}`;
}

/**
 * The environment that shows a Vulkan process only this GPU (read by Mesa's device-select layer when the
 * process creates its Vulkan instance).
 */
export function vulkanSelectionEnv(gpu: GpuInfo): Record<string, string> {
  return { DRI_PRIME: driPrimeTag(gpu.pciAddress), MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1' };
}

const LAYER_FILE = 'VkLayer_MESA_device_select.json';

/** Where the Vulkan loader looks for implicit layers on Linux (XDG dirs, /etc, VK_ADD_IMPLICIT_LAYER_PATH). */
export function implicitLayerDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dataHome = env.XDG_DATA_HOME ?? path.join(os.homedir(), '.local/share');
  const dataDirs = (env.XDG_DATA_DIRS ?? '/usr/local/share:/usr/share').split(':');
  const configDirs = (env.XDG_CONFIG_DIRS ?? '/etc/xdg').split(':');
  const extra = (env.VK_ADD_IMPLICIT_LAYER_PATH ?? env.VK_IMPLICIT_LAYER_PATH ?? '').split(':');
  return [
    ...extra.filter(Boolean),
    ...configDirs.map((d) => path.join(d, 'vulkan/implicit_layer.d')),
    '/etc/vulkan/implicit_layer.d',
    path.join(dataHome, 'vulkan/implicit_layer.d'),
    ...dataDirs.map((d) => path.join(d, 'vulkan/implicit_layer.d')),
  ];
}

export function deviceSelectLayerPresent(env: NodeJS.ProcessEnv = process.env): boolean {
  return implicitLayerDirs(env).some((d) => existsSync(path.join(d, LAYER_FILE)));
}

export type GpuProvider = 'cpu' | 'webgpu' | 'cuda';

/** GPU_INDEX already applied in this process (one process, one GPU). */
let appliedIndex: number | null = null;

/**
 * Point this process's GPU provider at GPU `index` before its first GPU session (a no-op for `cpu`, and
 * for `null`: the provider's default GPU). WebGPU: sets the device-select layer's variables in the
 * process environment, which the Vulkan loader reads when onnxruntime first creates its instance.
 */
export function selectProcessGpu(
  provider: GpuProvider,
  index: number | null,
  opts: { gpus?: readonly GpuInfo[]; env?: NodeJS.ProcessEnv } = {},
): GpuInfo | null {
  if (index === null) return null;
  if (provider === 'cpu') {
    // Silently computing on the CPU after being asked for a GPU would hide a misconfigured worker.
    throw new InvalidArgumentError(
      `GPU_INDEX=${index} (--gpu ${index}) chooses a GPU, but EXECUTION_PROVIDER is cpu: ` +
        'set EXECUTION_PROVIDER=webgpu (or cuda), or unset GPU_INDEX',
    );
  }
  const env = opts.env ?? process.env;
  const gpu = gpuAt(index, opts.gpus ?? listGpus());
  if (appliedIndex !== null && appliedIndex !== index && env === process.env) {
    throw new InvalidArgumentError(
      `this process already computes on GPU ${appliedIndex}; one process serves one GPU (GPU ${index} ` +
        'needs a process of its own: cacheblend serve --gpus starts one per GPU)',
    );
  }
  if (provider === 'cuda') {
    // CUDA's own default order is fastest first; PCI order makes its indices those of nvidia-smi and ours.
    env.CUDA_DEVICE_ORDER = 'PCI_BUS_ID';
  } else {
    if (!deviceSelectLayerPresent(env)) {
      throw new UnavailableError(
        `GPU_INDEX=${index} on WebGPU needs Mesa's Vulkan device-select layer (${LAYER_FILE}; ` +
          'Debian/Ubuntu package mesa-vulkan-drivers, which works over NVIDIA drivers too): onnxruntime ' +
          'offers no other way to choose the WebGPU adapter. Not found in: ' +
          implicitLayerDirs(env).join(', '),
      );
    }
    Object.assign(env, vulkanSelectionEnv(gpu));
  }
  if (env === process.env) appliedIndex = index;
  return gpu;
}
