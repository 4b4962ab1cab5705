import { arch } from 'node:os';

export function dockerArch(): string {
  return { x64: 'amd64', arm64: 'arm64' }[arch()] ?? arch();
}
