import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config/index.js';
import { InvalidArgumentError, UnavailableError } from '../../core/errors.js';
import { parseGpuList, startGpuWorkers } from '../../core/ops/gpu-workers.js';
import { createLogger } from '../../core/ops/log.js';
import {
  describeGpus,
  driPrimeTag,
  gpuAt,
  listGpus,
  selectProcessGpu,
  type GpuInfo,
} from '../../core/runtime/gpus.js';

/** A sysfs PCI tree: two NVIDIA 3D controllers, a BMC's VGA adapter and a NIC, listed out of order. */
function fakeSysfs(): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'sysfs-'));
  const drivers = path.join(root, 'drivers');
  const devices = path.join(root, 'devices');
  mkdirSync(devices);
  const add = (addr: string, cls: string, vendor: string, device: string, driver: string) => {
    const dir = path.join(devices, addr);
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'class'), `${cls}\n`);
    writeFileSync(path.join(dir, 'vendor'), `${vendor}\n`);
    writeFileSync(path.join(dir, 'device'), `${device}\n`);
    mkdirSync(path.join(drivers, driver), { recursive: true });
    symlinkSync(path.join(drivers, driver), path.join(dir, 'driver'));
  };
  add('0000:9a:00.0', '0x030200', '0x10de', '0x2335', 'nvidia');
  add('0000:02:00.0', '0x030000', '0x1a03', '0x2000', 'ast');
  add('0000:18:00.0', '0x030200', '0x10de', '0x2335', 'nvidia');
  add('0000:31:00.0', '0x020000', '0x15b3', '0x101d', 'mlx5_core');
  return devices;
}

const TWO: GpuInfo[] = [
  { index: 0, pciAddress: '0000:18:00.0', vendorId: '10de', deviceId: '2335', driver: 'nvidia' },
  { index: 1, pciAddress: '0000:9a:00.0', vendorId: '10de', deviceId: '2335', driver: 'nvidia' },
];

/** An environment whose Vulkan layer directories are empty temporary folders (nothing installed). */
function bareEnv(): NodeJS.ProcessEnv {
  const d = mkdtempSync(path.join(os.tmpdir(), 'xdg-'));
  return { XDG_DATA_DIRS: d, XDG_CONFIG_DIRS: d, XDG_DATA_HOME: d };
}

describe('GPU selection', () => {
  it('lists GPUs in PCI order, leaving out display-only adapters and other devices', () => {
    expect(listGpus(fakeSysfs())).toEqual(TWO);
    expect(listGpus('/nonexistent/sysfs', '/nonexistent/proc')).toEqual([]);
    // A container without the PCI tree: the NVIDIA driver's list.
    const proc = mkdtempSync(path.join(os.tmpdir(), 'nvproc-'));
    for (const a of ['0000:9A:00.0', '0000:18:00.0']) mkdirSync(path.join(proc, a));
    expect(listGpus('/nonexistent/sysfs', proc).map((g) => [g.index, g.pciAddress])).toEqual([
      [0, '0000:18:00.0'],
      [1, '0000:9a:00.0'],
    ]);
  });

  it('names the indices that exist when one does not', () => {
    expect(gpuAt(1, TWO).pciAddress).toBe('0000:9a:00.0');
    expect(() => gpuAt(2, TWO)).toThrow(InvalidArgumentError);
    expect(() => gpuAt(2, TWO)).toThrow(
      'GPU 2 does not exist: this host has GPU 0 (0000:18:00.0, nvidia 10de:2335), 1 (0000:9a:00.0, nvidia 10de:2335)',
    );
    expect(() => gpuAt(0, [])).toThrow('GPU 0 does not exist: this host has no GPU bound to a GPU driver');
    expect(describeGpus([])).toMatch(/no GPU/);
  });

  it("tells Mesa's device-select layer the GPU's PCI address (WebGPU)", () => {
    expect(driPrimeTag('0000:9a:00.0')).toBe('pci-0000_9a_00_0');
    const env = bareEnv();
    const layers = path.join(env.XDG_DATA_DIRS!, 'vulkan/implicit_layer.d');
    mkdirSync(layers, { recursive: true });
    writeFileSync(path.join(layers, 'VkLayer_MESA_device_select.json'), '{}');
    expect(selectProcessGpu('webgpu', 1, { gpus: TWO, env })?.index).toBe(1);
    expect(env.DRI_PRIME).toBe('pci-0000_9a_00_0');
    expect(env.MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE).toBe('1');
  });

  it('refuses WebGPU selection without the device-select layer, saying what to install', () => {
    const env = bareEnv();
    expect(() => selectProcessGpu('webgpu', 0, { gpus: TWO, env })).toThrow(UnavailableError);
    expect(() => selectProcessGpu('webgpu', 0, { gpus: TWO, env })).toThrow(/mesa-vulkan-drivers/);
    expect(env.DRI_PRIME).toBeUndefined();
  });

  it('orders CUDA devices by PCI bus; an unset index changes nothing; a GPU asked of the cpu provider is refused', () => {
    const env = bareEnv();
    expect(selectProcessGpu('cuda', 1, { gpus: TWO, env })?.pciAddress).toBe('0000:9a:00.0');
    expect(env.CUDA_DEVICE_ORDER).toBe('PCI_BUS_ID');
    const untouched = bareEnv();
    expect(() => selectProcessGpu('cpu', 1, { gpus: TWO, env: untouched })).toThrow(
      /EXECUTION_PROVIDER is cpu/,
    );
    expect(selectProcessGpu('webgpu', null, { gpus: TWO, env: untouched })).toBeNull();
    expect(untouched.DRI_PRIME).toBeUndefined();
    expect(() => selectProcessGpu('cuda', 7, { gpus: TWO, env })).toThrow(/GPU 7 does not exist/);
  });

  it('parses --gpus against the host', () => {
    expect(parseGpuList('all', TWO)).toEqual([0, 1]);
    expect(parseGpuList('1,0,1', TWO)).toEqual([1, 0]);
    expect(() => parseGpuList('0,2', TWO)).toThrow(/GPU 2 does not exist/);
    expect(() => parseGpuList('zero', TWO)).toThrow(/comma-separated list/);
    expect(() => parseGpuList('all', [])).toThrow(/no GPU/);
  });

  it('reads GPU_INDEX, refusing a bad value', () => {
    expect(loadConfig({}).gpuIndex).toBeNull();
    expect(loadConfig({ GPU_INDEX: '1' }).gpuIndex).toBe(1);
    expect(() => loadConfig({ GPU_INDEX: '-1' })).toThrow(/GPU_INDEX/);
  });

  it('starts no GPU worker processes for the CPU provider', () => {
    const log = createLogger('silent', 'test');
    expect(() =>
      startGpuWorkers(loadConfig({}), { gpus: [0], redisUrl: 'redis://127.0.0.1:1', log }),
    ).toThrow(/EXECUTION_PROVIDER=webgpu or cuda/);
  });
});

describe('cacheblend worker --gpu', () => {
  it('exits with a message naming the GPUs that exist, before touching Redis', async () => {
    const bin = fileURLToPath(new URL('../../bin/cacheblend.js', import.meta.url));
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [bin, 'worker', 'blend', '--gpu', '9'],
        {
          env: { ...process.env, EXECUTION_PROVIDER: 'webgpu', REDIS_URL: 'redis://127.0.0.1:1' },
          timeout: 60_000,
        },
        (_err, _stdout, stderr) => resolve({ code: child.exitCode, stderr }),
      );
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/GPU 9 does not exist: this host has/);
  });
});
