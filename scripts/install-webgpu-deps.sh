#!/usr/bin/env bash
# Installs the Debian packages that the WebGPU backend's software adapter needs, where missing:
# Dawn (the `webgpu` npm package) opens the unversioned libEGL.so, which only libegl-dev links;
# libegl-mesa0 is Mesa's EGL, and libgl1-mesa-dri holds llvmpipe (dri/swrast_dri.so). Checked on
# Debian bookworm with LD_DEBUG=files: these are the libraries Dawn's OpenGL adapter loads.
# Idempotent: it does nothing when they are installed. Machines with a GPU need the GPU's Vulkan
# driver instead (see docs/backends.md).
set -euo pipefail

packages=(libegl-dev libegl-mesa0 libgl1-mesa-dri)

if [ "$(uname -s)" != "Linux" ]; then
  echo "install-webgpu-deps: nothing to install on $(uname -s) (WebGPU uses Metal or D3D12 there)"
  exit 0
fi
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  echo "install-webgpu-deps: not a Debian-like system; install Mesa's EGL and llvmpipe (on Debian: ${packages[*]})" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-webgpu-deps: ${packages[*]} already installed"
  exit 0
fi

echo "install-webgpu-deps: installing ${missing[*]}"
bash "$(dirname "$0")/apt-install.sh" "${missing[@]}"
