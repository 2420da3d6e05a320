#!/usr/bin/env python3
"""Cargo runner for wasm32-wasip1 test binaries: runs the module in wasmtime (the Python
package) with SIMD enabled, passing the arguments and exit code through. Used by
scripts/test.sh to run the engine's kernel tests on wasm32 + simd128."""
import sys

import wasmtime


def main() -> int:
    module_path, *args = sys.argv[1:]
    config = wasmtime.Config()
    config.wasm_simd = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [module_path, *args]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    module = wasmtime.Module.from_file(engine, module_path)
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as exit_trap:
        return exit_trap.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
